#include <string.h>

#include "glue.h"
#include "_cgo_export.h"

#define HEADER_SIZE ((sizeof(lego_frame) + 15) & ~(size_t)15)

lego_frame *lego_frame_new(size_t data_cap) {
  lego_frame *f = aligned_alloc(16, HEADER_SIZE + ((data_cap + 15) & ~(size_t)15));
  if (f == NULL) return NULL;
  memset(f, 0, sizeof *f);
  f->data = (unsigned char *)f + HEADER_SIZE;
  f->data_cap = data_cap;
  return f;
}

static void read_view(lego_frame *f) {
  f->view.size = sizeof f->view;
  if (le_request_response(f->request, &f->view) != LE_OK) memset(&f->view, 0, sizeof f->view);
}

static void wake_trampoline(le_request *request, void *user_data) {
  (void)request;
  legoWake((uintptr_t)user_data);
}

/* A step yielded: give the request its waker on its first wait, and list what it waits for. */
static le_status settle_yield(lego_frame *f, le_status status) {
  if (!f->waker_set) {
    f->waker_set = true;
    if (le_request_set_waker(f->request, wake_trampoline, (void *)f->wake, &f->err) != LE_OK) return LE_STATUS_ERROR;
    /* A wait that ended before the waker was set (a zero sleep) woke no one: look again. */
    status = le_request_resume(f->request, &f->err);
    if (status != LE_STATUS_YIELD) return status;
  }
  if (le_request_pending(f->request, &f->pending, &f->n_pending) != LE_OK) {
    f->pending = NULL;
    f->n_pending = 0;
  }
  return LE_STATUS_YIELD;
}

/* Whether Lua's answer is an error page for the host to send: ngx.exit(status >= 400) without
 * output, which nginx answers with its special response. */
static bool error_page(const le_response_view *v) {
  return !v->headers_sent && v->body.len == 0 && v->exit_code >= 400 && v->exit_code <= 999;
}

static bool inspect(lego_frame *f) {
  f->req_view.size = sizeof f->req_view;
  f->inspected = le_request_inspect(f->request, &f->req_view) == LE_OK;
  return f->inspected;
}

/* Goes on with the batch after the step before `next_step` returned `status` (`ran`), or from
 * `next_step` (`!ran`). */
static le_status run_steps(lego_frame *f, le_status status, bool ran) {
  f->inspected = false;
  f->error_page = false;
  f->pending = NULL;
  f->n_pending = 0;
  for (;;) {
    if (ran) {
      if (status == LE_STATUS_YIELD) status = settle_yield(f, status);
      if (status == LE_STATUS_YIELD || status == LE_STATUS_ERROR) break;
      if (status == LE_STATUS_DONE) {
        f->answered = true;
      } else if (f->inspect && f->phases[f->next_step - 1] == LE_PHASE_REWRITE && inspect(f) &&
                 f->req_view.location_jump) {
        f->jumped = true;
        break;
      }
    }
    while (f->next_step < f->n_steps && f->answered != f->answer_only[f->next_step]) f->next_step++;
    if (f->next_step >= f->n_steps) break;
    uint32_t i = f->next_step++;
    if (f->answered && f->phases[i] == LE_PHASE_BODY_FILTER) {
      /* The page is the body to filter, not the empty one Lua wrote: Go filters it. */
      read_view(f);
      if (error_page(&f->view)) {
        ran = false;
        continue;
      }
    }
    status = le_request_run(f->request, f->phases[i], f->scripts[i], &f->err);
    ran = true;
  }
  read_view(f);
  if (status == LE_STATUS_ERROR || status == LE_STATUS_YIELD) return status;
  if (f->answered) {
    f->error_page = error_page(&f->view);
    return LE_STATUS_DONE;
  }
  if (f->inspect && !f->jumped) inspect(f);
  return LE_STATUS_OK;
}

le_status lego_run(lego_frame_ref frame) {
  return run_steps((lego_frame *)frame, LE_STATUS_OK, false);
}

le_status lego_resume(lego_frame_ref frame) {
  lego_frame *f = (lego_frame *)frame;
  return run_steps(f, le_request_resume(f->request, &f->err), true);
}

le_result lego_complete(lego_frame_ref frame, uint64_t id, const le_value *values, size_t n, bool fail, le_str message) {
  lego_frame *f = (lego_frame *)frame;
  if (fail) return le_request_complete_error(f->request, id, message, &f->err);
  return le_request_complete(f->request, id, values, n, &f->err);
}

le_status lego_header_filter(lego_frame_ref frame, uint16_t status, const le_header *headers, size_t n,
                             const le_script *header_filter) {
  lego_frame *f = (lego_frame *)frame;
  le_status result = LE_STATUS_OK;
  if (le_request_set_response(f->request, status, headers, n, &f->err) != LE_OK) {
    result = LE_STATUS_ERROR;
  } else if (header_filter != NULL) {
    result = le_request_run(f->request, LE_PHASE_HEADER_FILTER, header_filter, &f->err);
  }
  read_view(f);
  return result;
}

le_status lego_body_filter(lego_frame_ref frame, const le_script *script, le_str chunk, bool eof) {
  lego_frame *f = (lego_frame *)frame;
  f->chunk.size = sizeof f->chunk;
  le_status status = le_request_body_filter(f->request, script, chunk, eof, &f->chunk, &f->err);
  if (status == LE_STATUS_ERROR) memset(&f->chunk, 0, sizeof f->chunk);
  return status;
}

le_status lego_start(lego_frame_ref frame, uint32_t worker_hint) {
  lego_frame *f = (lego_frame *)frame;
  f->request = NULL;
  f->init.size = sizeof f->init;
  if (le_request_new(f->engine, &f->init, worker_hint, &f->request, &f->err) != LE_OK) {
    f->request = NULL;
    return LE_STATUS_ERROR;
  }
  f->id = le_request_id(f->request);
  return lego_run(frame);
}

void lego_cancel(lego_frame_ref frame) {
  lego_frame *f = (lego_frame *)frame;
  f->inspected = false;
  f->pending = NULL;
  f->n_pending = 0;
  if (le_request_cancel(f->request, NULL) != LE_OK) {
    /* Freeing it stops the wait all the same (Go then reports the request cancelled). */
    le_request_free(f->request);
    f->request = NULL;
    memset(&f->view, 0, sizeof f->view);
    return;
  }
  read_view(f);
}

le_status lego_finish(lego_frame_ref frame) {
  lego_frame *f = (lego_frame *)frame;
  le_status status = LE_STATUS_OK;
  while (f->next_step < f->n_steps && status != LE_STATUS_ERROR) {
    uint32_t i = f->next_step++;
    status = le_request_run(f->request, f->phases[i], f->scripts[i], &f->err);
  }
  le_request_free(f->request);
  f->request = NULL;
  memset(&f->view, 0, sizeof f->view);
  f->inspected = false;
  f->pending = NULL;
  f->n_pending = 0;
  memset(&f->chunk, 0, sizeof f->chunk);
  return status;
}

void lego_error_read(const le_error *error, lego_error_fields *out) {
  out->code = le_error_code(error);
  out->message = le_error_message(error);
  out->chunk = le_error_chunk(error);
  out->line = le_error_line(error);
  out->traceback = le_error_traceback(error);
}

static void host_trampoline(le_call *call, void *user_data) {
  legoHostCall(call, (uintptr_t)user_data);
}

static void log_trampoline(void *user_data, const le_log_record *record) {
  legoLog((uintptr_t)user_data, (le_log_record *)record);
}

void lego_set_function(le_function *function, le_str name, uintptr_t handle) {
  function->name = name;
  function->function = host_trampoline;
  function->user_data = (void *)handle;
}

void lego_set_log(le_config *config, uintptr_t handle) {
  config->log = log_trampoline;
  config->log_user_data = (void *)handle;
}

static void timer_op_trampoline(le_timer_op *op, const le_pending *pending, void *user_data) {
  legoTimerOp(op, (le_pending *)pending, (uintptr_t)user_data);
}

void lego_set_timer_op(le_config *config, uintptr_t handle) {
  config->timer_op = timer_op_trampoline;
  config->timer_op_user_data = (void *)handle;
}

le_result lego_call_answer(le_call *call, const le_value *values, size_t n, bool fail, le_str message) {
  if (fail) return le_call_fail(call, message, NULL);
  return le_call_return(call, values, n, NULL);
}

le_result lego_timer_op_answer(le_timer_op *op, const le_value *values, size_t n, bool fail, le_str message) {
  if (fail) return le_timer_op_complete_error(op, message, NULL);
  return le_timer_op_complete(op, values, n, NULL);
}

static void dict_key_trampoline(le_str key, void *user_data) {
  legoDictKey(key, (uintptr_t)user_data);
}

le_result lego_dict_keys(const le_dict *dict, size_t max, uintptr_t handle, le_error **err) {
  return le_dict_keys(dict, max, dict_key_trampoline, (void *)handle, err);
}

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
  if (le_request_response(f->request, &f->view) != LE_OK) memset(&f->view, 0, sizeof f->view);
}

le_status lego_run(lego_frame_ref frame) {
  lego_frame *f = (lego_frame *)frame;
  le_status status = LE_STATUS_OK;
  while (f->next_step < f->n_steps) {
    uint32_t i = f->next_step++;
    if (f->answered != f->answer_only[i]) continue;
    status = le_request_run(f->request, f->phases[i], f->scripts[i], &f->err);
    if (status == LE_STATUS_DONE) {
      f->answered = true;
    } else if (status != LE_STATUS_OK) {
      break;
    }
  }
  read_view(f);
  if (status == LE_STATUS_ERROR || status == LE_STATUS_YIELD) return status;
  return f->answered ? LE_STATUS_DONE : LE_STATUS_OK;
}

le_status lego_start(lego_frame_ref frame, uint32_t worker_hint) {
  lego_frame *f = (lego_frame *)frame;
  f->request = NULL;
  if (le_request_new(f->engine, &f->init, worker_hint, &f->request, &f->err) != LE_OK) {
    f->request = NULL;
    return LE_STATUS_ERROR;
  }
  f->id = le_request_id(f->request);
  return lego_run(frame);
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

le_result lego_call_answer(le_call *call, const le_value *values, size_t n, bool fail, le_str message) {
  if (fail) return le_call_fail(call, message, NULL);
  return le_call_return(call, values, n, NULL);
}

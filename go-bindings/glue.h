/*
 * The C side of the Go bindings: a frame per request that Go fills in place (no cgo pointer
 * passing), and helpers that do several C ABI calls per cgo crossing.
 */
#ifndef LUAENGINE_GO_GLUE_H
#define LUAENGINE_GO_GLUE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "luaengine.h"

/* Steps one batch may hold: the six request phases, with room to spare. */
#define LEGO_MAX_STEPS 8

/*
 * Everything one request needs across the boundary, in C memory that Go writes directly:
 * the snapshot (`init`, whose headers and strings live in `data`), the planned phase runs, and
 * the outputs (`request`, `err`, `view`). Go only ever passes the frame's address to C.
 */
typedef struct lego_frame {
  /* Set by Go before lego_start. */
  const le_engine *engine;
  le_request *request;
  /* The failure of the last step that failed; Go takes it and sets it back to NULL. */
  le_error *err;
  /* Refreshed after every batch; valid until the next call on the request. */
  le_response_view view;
  /* The batch: run steps [next_step, n_steps). */
  uint32_t n_steps;
  uint32_t next_step;
  /* A step answered the request (LE_STATUS_DONE). Request phases (rewrite, access, content)
   * run only until then, filter steps (`answer_only`) only from then on, like nginx runs its
   * filters on the response whoever produced it. */
  bool answered;
  le_phase phases[LEGO_MAX_STEPS];
  const le_script *scripts[LEGO_MAX_STEPS];
  bool answer_only[LEGO_MAX_STEPS];
  /* The batch answered with an error page (ngx.exit(status >= 400) without output) for the
   * host to send. A body_filter step is skipped then, for the host to run it on the page. */
  bool error_page;
  /* le_request_id, set by lego_start. */
  uint64_t id;
  /* Set by Go: read the request back (`req_view`) after a rewrite step, stopping the batch
   * when it jumped (`jumped`), and at the end of a batch that leaves the request unanswered,
   * so the wrapped handler sees what rewrite and access changed. */
  bool inspect;
  bool jumped;
  /* Whether `req_view` was read by the last batch; valid until the next call on the request. */
  bool inspected;
  le_request_view req_view;
  /* The cgo.Handle of the Go side's wake channel: the wake callback's user data, set on the
   * request at its first yield (most requests never wait, and pay nothing for it). */
  uintptr_t wake;
  bool waker_set;
  /* After a batch stopped at a yield: the request's pending operations (le_request_pending),
   * valid until the next call on the request. */
  const le_pending *pending;
  size_t n_pending;
  /* The last le_request_body_filter output; valid until the next call on the request. */
  le_body_chunk chunk;
  le_request_init init;
  /* `data_cap` bytes right after the frame: init.headers first, then the strings init points
   * to. 16-byte aligned. */
  unsigned char *data;
  size_t data_cap;
} lego_frame;

/* A zeroed frame with `data_cap` bytes of data; free it with free(). NULL when out of memory. */
lego_frame *lego_frame_new(size_t data_cap);

/* The functions below take the frame's address as an integer: it is C memory, and an integer
 * argument spares cgo the check, on every call, that a pointer argument holds no Go pointer. */
typedef uintptr_t lego_frame_ref;

/* Creates the request from `f->init` on `f->engine` (on success `f->request`, else `f->err`),
 * then runs the batch as lego_run does. Returns LE_STATUS_ERROR with `f->request == NULL` when
 * creation failed. */
le_status lego_start(lego_frame_ref frame, uint32_t worker_hint);

/* Runs the batch from `f->next_step`, skipping the steps that do not apply (see `answered`,
 * `error_page`).
 * LE_STATUS_ERROR (with `f->err`) and LE_STATUS_YIELD (with `f->pending`) stop the batch with
 * `next_step` past the step that stopped; so does a rewrite step that jumped (`f->jumped`,
 * with `f->inspect`). Reads the response view before returning. Returns the stopping status,
 * else DONE if the request is answered, else OK. */
le_status lego_run(lego_frame_ref frame);

/* Resumes the step that yielded, then goes on with the batch as lego_run does. */
le_status lego_resume(lego_frame_ref frame);

/* Completes pending operation `id` with `n` results, or with `fail`, an error message; the
 * caller then resumes. */
le_result lego_complete(lego_frame_ref frame, uint64_t id, const le_value *values, size_t n, bool fail, le_str message);

/* Hands the host's response (status and headers) to the filters and runs `header_filter`
 * (when not NULL) on it, refreshing the response view. */
le_status lego_header_filter(lego_frame_ref frame, uint16_t status, const le_header *headers, size_t n,
                             const le_script *header_filter);

/* Runs body_filter on one chunk of the host's body into `f->chunk`. */
le_status lego_body_filter(lego_frame_ref frame, const le_script *script, le_str chunk, bool eof);

/* Ends the step that waits (le_request_cancel) and refreshes the response view; the request
 * stays for the steps planned next (log). Should it refuse, the request is freed instead. */
void lego_cancel(lego_frame_ref frame);

/* Runs what is left of the batch whatever the request's state (a failure is kept in `f->err`
 * and stops it), then frees the request. Returns the status of the last step run
 * (LE_STATUS_OK when none ran). */
le_status lego_finish(lego_frame_ref frame);

/* Everything an le_error says, read in one crossing. The strings live as long as the error. */
typedef struct lego_error_fields {
  le_result code;
  le_str message;
  le_str chunk;
  uint32_t line;
  le_str traceback;
} lego_error_fields;

void lego_error_read(const le_error *error, lego_error_fields *out);

/* Points a host function entry or the log sink at the Go callbacks, with a cgo.Handle as the
 * user data (kept as an integer on the Go side, so no Go pointer ever reaches C). */
void lego_set_function(le_function *function, le_str name, uintptr_t handle);
void lego_set_log(le_config *config, uintptr_t handle);
void lego_set_timer_op(le_config *config, uintptr_t handle);

/* le_dict_keys into the Go callback legoDictKey, with a cgo.Handle as its user data. */
le_result lego_dict_keys(const le_dict *dict, size_t max, uintptr_t handle, le_error **err);

/* Hands `n` results (or, with `fail`, an error message) to a host call in one crossing. */
le_result lego_call_answer(le_call *call, const le_value *values, size_t n, bool fail, le_str message);

/* The same for a timer callback's async call; releases `op`. */
le_result lego_timer_op_answer(le_timer_op *op, const le_value *values, size_t n, bool fail, le_str message);

#endif

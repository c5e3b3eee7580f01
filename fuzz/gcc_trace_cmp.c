/* gcc's -fsanitize-coverage=trace-cmp also traces floating-point comparisons, which LLVM's
 * libFuzzer has no hooks for: without these the siteconf target does not link. They ignore the
 * operands: libFuzzer learns nothing from float comparisons either way. */
void __sanitizer_cov_trace_cmpf(float a, float b);
void __sanitizer_cov_trace_cmpd(double a, double b);

void __sanitizer_cov_trace_cmpf(float a, float b) {
  (void)a;
  (void)b;
}

void __sanitizer_cov_trace_cmpd(double a, double b) {
  (void)a;
  (void)b;
}

/* stub: being written */
typedef int ombud_stub_t;

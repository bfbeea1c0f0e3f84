/* fusejit's host launch call: a CPython extension that calls a module's launcher
 * (`NAME_launch_arrays` of launcher_arrays.cpp.in) at a given address.  Built once per machine and
 * Python into the toolchain directory; it replaces a ctypes call and the shared argument
 * holders it needs (so no lock either): the parameter array is built on this call's stack.
 *
 *   call(launcher, grid, block, template, count, data_offset, state, array, ...)
 *
 * `template` is the address of `count` parameter pointers: a scalar's points at its value,
 * a buffer's is NULL and takes the next `array` (a NumPy array object, whose data pointer the
 * launcher reads at data_offset).  The GIL is released during the launch, as ctypes does.
 * `state` is the address of the launch's two counters (FJ_COST, FJ_LAST_END), or 0.
 *
 * Waking the workers.  After a parallel region OpenMP's workers spin for a while (about 20 us
 * with the GOMP_SPINCOUNT fusejit sets), then sleep; waking a sleeping worker took 55 us on
 * the development machine, a virtual machine, where a 256 x 300 map takes 8 us on one thread.
 * So a launch of several blocks runs them all on the calling thread when the workers sleep,
 * the launch does not recur back to back (its previous run ended less than FJ_AWAKE_NS ago:
 * a loop over it keeps the workers awake once they are), and its measured cost on one thread
 * is below what the workers would save after paying for the wake.  The blocks are the same
 * either way, so are the results.  A launch's cost is measured on its runs on one thread, or
 * from a run on awake workers (time x threads), starting from the caller's estimate.
 *
 *   start_threads()
 *
 * runs one empty OpenMP parallel region, so the worker threads every module's launches share
 * (one OpenMP runtime per process) exist before the first kernel runs, then measures what
 * waking them costs; returns their count.
 *
 *   launch_stats()
 *
 * (launches of several blocks run on the workers, run on the calling thread, the wake cost
 * in ns). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#if defined(_OPENMP)
#include <omp.h>
#endif

#define FJ_MAX_PARAMS 256

typedef void (*fj_launcher)(unsigned int grid, unsigned int block, void** args, long long data_offset);

static PyTypeObject* fj_array_type = NULL;

#define FJ_COST 0      /* state[FJ_COST]: the launch's cost on one thread, ns */
#define FJ_LAST_END 1  /* state[FJ_LAST_END]: when its last run returned, ns */
#define FJ_AWAKE_NS 10000LL  /* workers that finished a region this recently still spin */
static long long fj_parallel_end = 0;  /* when the last launch on the workers returned */
static long long fj_wake_ns = 20000;   /* measured by start_threads */
static int fj_threads = 1;
static unsigned long long fj_on_workers = 0, fj_on_caller = 0;

static long long fj_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Whether a launch of several blocks runs them on the calling thread alone (the module's
 * `omp parallel for` then has a team of one). */
static int fj_on_caller_now(const long long* state, long long now, int awake) {
  if (fj_threads < 2 || awake || now - state[FJ_LAST_END] < FJ_AWAKE_NS) return 0;
  /* the workers save cost (1 - 1/threads) of the run and cost fj_wake_ns to wake */
  return state[FJ_COST] - state[FJ_COST] / fj_threads < fj_wake_ns;
}

/* One launch, its blocks on the workers or on the calling thread (above); the GIL released. */
static void fj_launch(fj_launcher launcher, unsigned long grid, unsigned long block, void** params,
                      long long data_offset, long long* state) {
  if (grid > 1 && state) {
    const long long start = fj_now();
    const int awake = start - fj_parallel_end < FJ_AWAKE_NS;
    const int alone = fj_on_caller_now(state, start, awake);
#if defined(_OPENMP)
    const int before = omp_get_max_threads();
    if (alone) omp_set_num_threads(1);
#endif
    launcher((unsigned int)grid, (unsigned int)block, params, data_offset);
#if defined(_OPENMP)
    if (alone) omp_set_num_threads(before);
#endif
    const long long end = fj_now();
    if (alone) {
      state[FJ_COST] = end - start;
      ++fj_on_caller;
    } else {
      if (awake) state[FJ_COST] = (end - start) * fj_threads;
      fj_parallel_end = end;
      ++fj_on_workers;
    }
    state[FJ_LAST_END] = end;
  } else {
    launcher((unsigned int)grid, (unsigned int)block, params, data_offset);
  }
}

static PyObject* fj_set_array_type(PyObject* self, PyObject* type) {
  (void)self;
  if (!PyType_Check(type)) {
    PyErr_SetString(PyExc_TypeError, "set_array_type takes a type");
    return NULL;
  }
  Py_INCREF(type);
  Py_XDECREF((PyObject*)fj_array_type);
  fj_array_type = (PyTypeObject*)type;
  Py_RETURN_NONE;
}

/* A call's arguments, parsed: the launcher, grid, block, data offset, state and parameters
 * (`params[k]` a scalar's template pointer, or a pointer to the k-th buffer's array object in
 * `objects`).  0 on success; -1 with a Python error set. */
typedef struct {
  fj_launcher launcher;
  unsigned long grid, block;
  long long data_offset;
  long long* state;
  Py_ssize_t count;
  void* params[FJ_MAX_PARAMS];
  PyObject* objects[FJ_MAX_PARAMS];
} fj_parsed;

static int fj_parse(PyObject* const* args, Py_ssize_t nargs, fj_parsed* p) {
  if (nargs < 7 || !fj_array_type) {
    PyErr_SetString(PyExc_TypeError, "call(launcher, grid, block, template, count, data_offset, state, array, ...)");
    return -1;
  }
  p->launcher = (fj_launcher)PyLong_AsVoidPtr(args[0]);
  p->grid = PyLong_AsUnsignedLong(args[1]);
  p->block = PyLong_AsUnsignedLong(args[2]);
  void* const* template_params = (void* const*)PyLong_AsVoidPtr(args[3]);
  p->count = PyLong_AsSsize_t(args[4]);
  p->data_offset = PyLong_AsLongLong(args[5]);
  p->state = (long long*)PyLong_AsVoidPtr(args[6]);
  if (PyErr_Occurred()) return -1;
  if (!p->launcher || !template_params || p->count < 0 || p->count > FJ_MAX_PARAMS) {
    PyErr_SetString(PyExc_ValueError, "call: a null launcher or template, or a bad parameter count");
    return -1;
  }
  Py_ssize_t next = 7;
  for (Py_ssize_t k = 0; k < p->count; ++k) {
    if (template_params[k]) {
      p->params[k] = template_params[k];
      continue;
    }
    if (next >= nargs) {
      PyErr_SetString(PyExc_TypeError, "call: fewer arrays than the template's buffers");
      return -1;
    }
    PyObject* array = args[next];
    if (Py_TYPE(array) != fj_array_type) {
      PyErr_Format(PyExc_TypeError, "kernel argument %zd must be a NumPy array, not %.100s", k,
                   Py_TYPE(array)->tp_name);
      return -1;
    }
    p->objects[next - 7] = array;
    p->params[k] = &p->objects[next - 7];
    ++next;
  }
  if (next != nargs) {
    PyErr_SetString(PyExc_TypeError, "call: more arrays than the template's buffers");
    return -1;
  }
  return 0;
}

static PyObject* fj_call(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  fj_parsed p;
  if (fj_parse(args, nargs, &p) < 0) return NULL;
  /* The arrays stay alive: the caller holds them for the call. */
  Py_BEGIN_ALLOW_THREADS
  fj_launch(p.launcher, p.grid, p.block, p.params, p.data_offset, p.state);
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

/* Recorded launches: a host loop's graph (fusejit/graphs.py), the launches and copies of its
 * iterations kept as replay() runs them again, in a bytes object of long longs:
 *   launch: FJ_RECORD_LAUNCH, launcher, grid, block, state, count, then per parameter a pair:
 *           a scalar's template pointer (its value is fixed by the plan) and 0, or 0 and a
 *           buffer's address;
 *   copy:   FJ_RECORD_COPY, destination address, source address, bytes.
 *
 *   record(launcher, grid, block, template, count, data_offset, state, array, ...) -> bytes
 *   record_copy(destination, source, bytes) -> bytes
 *   replay(blob, data_offset, starts, sizes, array, ...)
 *
 * replay runs the entries in order with the GIL released once.  An address in [starts[k],
 * starts[k] + sizes[k]) (a buffer the loop was captured on: its inputs) is taken at the same
 * offset in the k-th array instead, so a replay reads the call's own inputs in place. */
#define FJ_RECORD_LAUNCH 1LL
#define FJ_RECORD_COPY 2LL
#define FJ_MAX_RELOCATIONS 256

static PyObject* fj_record(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  fj_parsed p;
  if (fj_parse(args, nargs, &p) < 0) return NULL;
  if (p.data_offset < 0) {
    PyErr_SetString(PyExc_ValueError, "record: arrays of an unknown layout");
    return NULL;
  }
  long long entry[6 + 2 * FJ_MAX_PARAMS];
  entry[0] = FJ_RECORD_LAUNCH;
  entry[1] = (long long)(uintptr_t)p.launcher;
  entry[2] = (long long)p.grid;
  entry[3] = (long long)p.block;
  entry[4] = (long long)(uintptr_t)p.state;
  entry[5] = (long long)p.count;
  for (Py_ssize_t k = 0; k < p.count; ++k) {
    const int buffer = p.params[k] >= (void*)p.objects && p.params[k] < (void*)(p.objects + FJ_MAX_PARAMS);
    entry[6 + 2 * k] = buffer ? 0 : (long long)(uintptr_t)p.params[k];
    entry[7 + 2 * k] = buffer ? *(long long*)((char*)*(PyObject**)p.params[k] + p.data_offset) : 0;
  }
  return PyBytes_FromStringAndSize((const char*)entry, (Py_ssize_t)((6 + 2 * p.count) * sizeof(long long)));
}

static PyObject* fj_record_copy(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "record_copy(destination, source, bytes)");
    return NULL;
  }
  long long entry[4] = {FJ_RECORD_COPY, PyLong_AsLongLong(args[0]), PyLong_AsLongLong(args[1]),
                        PyLong_AsLongLong(args[2])};
  if (PyErr_Occurred()) return NULL;
  return PyBytes_FromStringAndSize((const char*)entry, (Py_ssize_t)sizeof(entry));
}

/* An address recorded on the captured buffers, moved into the call's arrays. */
static char* fj_relocate(long long address, Py_ssize_t n, const long long* starts, const long long* sizes,
                         char* const* bases) {
  for (Py_ssize_t k = 0; k < n; ++k)
    if (address >= starts[k] && address < starts[k] + sizes[k]) return bases[k] + (address - starts[k]);
  return (char*)(uintptr_t)address;
}

static PyObject* fj_replay(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  if (nargs < 4 || !PyBytes_Check(args[0]) || !PyTuple_Check(args[2]) || !PyTuple_Check(args[3]) ||
      PyTuple_GET_SIZE(args[2]) != nargs - 4 || PyTuple_GET_SIZE(args[3]) != nargs - 4 ||
      nargs - 4 > FJ_MAX_RELOCATIONS || !fj_array_type) {
    PyErr_SetString(PyExc_TypeError,
                    "replay(blob, data_offset, starts, sizes, array, ...): a start and a size per array");
    return NULL;
  }
  const Py_ssize_t n = nargs - 4;
  const long long data_offset = PyLong_AsLongLong(args[1]);
  long long starts[FJ_MAX_RELOCATIONS], sizes[FJ_MAX_RELOCATIONS];
  char* bases[FJ_MAX_RELOCATIONS];
  for (Py_ssize_t k = 0; k < n; ++k) {
    PyObject* array = args[4 + k];
    if (Py_TYPE(array) != fj_array_type) {
      PyErr_SetString(PyExc_TypeError, "replay: the arrays must be NumPy arrays");
      return NULL;
    }
    starts[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(args[2], k));
    sizes[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(args[3], k));
    bases[k] = *(char**)((char*)array + data_offset);
  }
  if (PyErr_Occurred()) return NULL;
  const long long* entry = (const long long*)PyBytes_AS_STRING(args[0]);
  const long long* end = entry + PyBytes_GET_SIZE(args[0]) / (Py_ssize_t)sizeof(long long);
  Py_BEGIN_ALLOW_THREADS
  while (entry < end) {
    if (entry[0] == FJ_RECORD_COPY) {
      memcpy(fj_relocate(entry[1], n, starts, sizes, bases), fj_relocate(entry[2], n, starts, sizes, bases),
             (size_t)entry[3]);
      entry += 4;
      continue;
    }
    const Py_ssize_t count = (Py_ssize_t)entry[5];
    /* A buffer's parameter points at a holder of the address of a cell that holds the
     * buffer's address: the launcher reads it `data_offset` (here 0) bytes into the object
     * the holder points at, as it reads a NumPy array's data pointer. */
    void* params[FJ_MAX_PARAMS];
    char* cells[FJ_MAX_PARAMS];
    char** holders[FJ_MAX_PARAMS];
    for (Py_ssize_t k = 0; k < count; ++k) {
      if (entry[6 + 2 * k]) {
        params[k] = (void*)(uintptr_t)entry[6 + 2 * k];
      } else {
        cells[k] = fj_relocate(entry[7 + 2 * k], n, starts, sizes, bases);
        holders[k] = &cells[k];
        params[k] = &holders[k];
      }
    }
    fj_launch((fj_launcher)(uintptr_t)entry[1], (unsigned long)entry[2], (unsigned long)entry[3], params, 0,
              (long long*)(uintptr_t)entry[4]);
    entry += 6 + 2 * count;
  }
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

static PyObject* fj_start_threads(PyObject* self, PyObject* unused) {
  (void)self;
  (void)unused;
  int threads = 1;
  Py_BEGIN_ALLOW_THREADS
#if defined(_OPENMP)
#pragma omp parallel
  {
#pragma omp single
    threads = omp_get_num_threads();
  }
  if (threads > 1) {
    /* The wake cost: an empty region after the workers have fallen asleep (the least of two). */
    long long least = -1;
    for (int k = 0; k < 2; ++k) {
      const struct timespec pause = {0, 500000};
      nanosleep(&pause, NULL);
      const long long start = fj_now();
      volatile int seen = 0;
#pragma omp parallel
      seen = omp_get_thread_num();
      (void)seen;
      const long long took = fj_now() - start;
      least = least < 0 || took < least ? took : least;
    }
    fj_wake_ns = least;
    fj_parallel_end = fj_now();
  }
#endif
  fj_threads = threads;
  Py_END_ALLOW_THREADS
  return PyLong_FromLong(threads);
}

static PyObject* fj_launch_stats(PyObject* self, PyObject* unused) {
  (void)self;
  (void)unused;
  return Py_BuildValue("(KKL)", fj_on_workers, fj_on_caller, fj_wake_ns);
}

static PyMethodDef fj_methods[] = {
    {"call", (PyCFunction)(void (*)(void))fj_call, METH_FASTCALL, "Call a module's launcher."},
    {"record", (PyCFunction)(void (*)(void))fj_record, METH_FASTCALL, "A launch as bytes, for replay."},
    {"record_copy", (PyCFunction)(void (*)(void))fj_record_copy, METH_FASTCALL, "A copy as bytes, for replay."},
    {"replay", (PyCFunction)(void (*)(void))fj_replay, METH_FASTCALL, "Run recorded launches and copies."},
    {"start_threads", fj_start_threads, METH_NOARGS, "Start the OpenMP worker threads; returns their count."},
    {"launch_stats", fj_launch_stats, METH_NOARGS, "(launches on the workers, on the calling thread, wake cost in ns)."},
    {"set_array_type", fj_set_array_type, METH_O, "The type every array argument must have."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fj_module = {PyModuleDef_HEAD_INIT, "fusejit_host_call", NULL, -1, fj_methods};

PyMODINIT_FUNC PyInit_fusejit_host_call(void) { return PyModule_Create(&fj_module); }

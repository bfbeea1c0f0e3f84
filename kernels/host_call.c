/* fusejit's host launch call: a CPython extension that calls a module's launcher
 * (`NAME_launch_arrays` of launcher_arrays.cpp.in) at a given address.  Built once per machine and
 * Python into the toolchain directory; it replaces a ctypes call and the shared argument
 * holders it needs (so no lock either): the parameter array is built on this call's stack.
 *
 *   call(launcher, grid, block, template, count, data_offset, array, ...)
 *
 * `template` is the address of `count` parameter pointers: a scalar's points at its value,
 * a buffer's is NULL and takes the next `array` (a NumPy array object, whose data pointer the
 * launcher reads at data_offset).  The GIL is released during the launch, as ctypes does.
 *
 *   start_threads()
 *
 * runs one empty OpenMP parallel region, so the worker threads every module's launches share
 * (one OpenMP runtime per process) exist before the first kernel runs; returns their count. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if defined(_OPENMP)
#include <omp.h>
#endif

#define FJ_MAX_PARAMS 256

typedef void (*fj_launcher)(unsigned int grid, unsigned int block, void** args, long long data_offset);

static PyTypeObject* fj_array_type = NULL;

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

static PyObject* fj_call(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  (void)self;
  if (nargs < 6 || !fj_array_type) {
    PyErr_SetString(PyExc_TypeError, "call(launcher, grid, block, template, count, data_offset, array, ...)");
    return NULL;
  }
  fj_launcher launcher = (fj_launcher)PyLong_AsVoidPtr(args[0]);
  const unsigned long grid = PyLong_AsUnsignedLong(args[1]);
  const unsigned long block = PyLong_AsUnsignedLong(args[2]);
  void* const* template_params = (void* const*)PyLong_AsVoidPtr(args[3]);
  const Py_ssize_t count = PyLong_AsSsize_t(args[4]);
  const long long data_offset = PyLong_AsLongLong(args[5]);
  if (PyErr_Occurred()) return NULL;
  if (!launcher || !template_params || count < 0 || count > FJ_MAX_PARAMS) {
    PyErr_SetString(PyExc_ValueError, "call: a null launcher or template, or a bad parameter count");
    return NULL;
  }
  void* params[FJ_MAX_PARAMS];
  PyObject* objects[FJ_MAX_PARAMS];
  Py_ssize_t next = 6;
  for (Py_ssize_t k = 0; k < count; ++k) {
    if (template_params[k]) {
      params[k] = template_params[k];
      continue;
    }
    if (next >= nargs) {
      PyErr_SetString(PyExc_TypeError, "call: fewer arrays than the template's buffers");
      return NULL;
    }
    PyObject* array = args[next];
    if (Py_TYPE(array) != fj_array_type) {
      PyErr_Format(PyExc_TypeError, "kernel argument %zd must be a NumPy array, not %.100s", k,
                   Py_TYPE(array)->tp_name);
      return NULL;
    }
    objects[next - 6] = array;
    params[k] = &objects[next - 6];
    ++next;
  }
  if (next != nargs) {
    PyErr_SetString(PyExc_TypeError, "call: more arrays than the template's buffers");
    return NULL;
  }
  /* The arrays stay alive: the caller holds them for the call. */
  Py_BEGIN_ALLOW_THREADS
  launcher((unsigned int)grid, (unsigned int)block, params, data_offset);
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
#endif
  Py_END_ALLOW_THREADS
  return PyLong_FromLong(threads);
}

static PyMethodDef fj_methods[] = {
    {"call", (PyCFunction)(void (*)(void))fj_call, METH_FASTCALL, "Call a module's launcher."},
    {"start_threads", fj_start_threads, METH_NOARGS, "Start the OpenMP worker threads; returns their count."},
    {"set_array_type", fj_set_array_type, METH_O, "The type every array argument must have."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fj_module = {PyModuleDef_HEAD_INIT, "fusejit_host_call", NULL, -1, fj_methods};

PyMODINIT_FUNC PyInit_fusejit_host_call(void) { return PyModule_Create(&fj_module); }

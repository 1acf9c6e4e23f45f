/*
 * A program that is not Python but embeds it, for krait's end-to-end tests
 * (test/e2e): krait must find the Python runtime in the libpython this
 * executable links.
 *
 * Usage: embed TRUTH_JSON_PATH
 *
 * It starts the interpreter, runs APP (below) as a module named
 * embedded_app.py, which starts a named thread that blocks in C and writes
 * what the test compares with (thread idents, native ids, the blocking
 * line) as JSON to TRUTH_JSON_PATH. Then the C main thread releases the GIL
 * and waits, with no Python frame on its stack, until it is killed.
 *
 * Build: gcc embed.c $(python3.12-config --embed --cflags --ldflags)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <unistd.h>

static const char APP[] =
    "import json, os, sys, threading\n"
    "\n"
    "NEVER = threading.Lock()\n"
    "NEVER.acquire()\n"
    "READY = threading.Event()\n"
    "INFO = {}\n"
    "\n"
    "def embedded_worker():\n"
    "    INFO['worker'] = {'ident': threading.get_ident(),\n"
    "                      'native_id': threading.get_native_id()}\n"
    "    INFO['block_line'] = sys._getframe().f_lineno + 2\n"
    "    READY.set()\n"
    "    NEVER.acquire()\n"
    "\n"
    "def start():\n"
    "    t = threading.Thread(target=embedded_worker, name='embedded-worker')\n"
    "    t.daemon = True\n"
    "    t.start()\n"
    "    READY.wait()\n"
    "    INFO['main'] = {'ident': threading.get_ident(),\n"
    "                    'native_id': threading.get_native_id()}\n"
    "    INFO['pid'] = os.getpid()\n"
    "    INFO['version'] = '%d.%d.%d' % sys.version_info[:3]\n"
    "    tmp = TRUTH_PATH + '.tmp'\n"
    "    with open(tmp, 'w') as f:\n"
    "        json.dump(INFO, f)\n"
    "    os.rename(tmp, TRUTH_PATH)\n"
    "\n"
    "start()\n";

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TRUTH_JSON_PATH\n", argv[0]);
        return 2;
    }
    Py_Initialize();

    PyObject *main_module = PyImport_AddModule("__main__"); /* borrowed */
    PyObject *globals = main_module ? PyModule_GetDict(main_module) : NULL;
    PyObject *path = PyUnicode_DecodeFSDefault(argv[1]);
    if (globals == NULL || path == NULL ||
        PyDict_SetItemString(globals, "TRUTH_PATH", path) < 0) {
        PyErr_Print();
        return 1;
    }
    Py_DECREF(path);

    PyObject *code = Py_CompileString(APP, "embedded_app.py", Py_file_input);
    if (code == NULL) {
        PyErr_Print();
        return 1;
    }
    PyObject *result = PyEval_EvalCode(code, globals, globals);
    Py_DECREF(code);
    if (result == NULL) {
        PyErr_Print();
        return 1;
    }
    Py_DECREF(result);

    /* Let the worker thread keep its thread state; wait without the GIL and
     * without any Python frame until killed. */
    PyThreadState *saved = PyEval_SaveThread();
    for (;;)
        pause();
    PyEval_RestoreThread(saved); /* not reached */
    return 0;
}

/* CBOR sequence -> JSON lines, without building Python objects (the CBOR reader's fast path).
 *
 * lines(buf, pos, max_depth, record_path=(), force_list=())
 *     -> (json: bytes, pos: int, items: int, rows: int, slow: bool, keys: set[str])
 *
 * Writes the records of the complete top-level items of buf from pos as JSON lines -- each
 * item itself, or with record_path the maps found there, walked as the Python `descend`
 * walks it -- and stops at the end of buf, at an incomplete item (the caller reads more), or
 * at an item this code does not handle (slow = True: the caller decodes that item with
 * cbor2). Handled: maps of text keys (no key twice), arrays, text strings (checked UTF-8),
 * integers, floats (NaN and infinities as null, like orjson), true, false, null and
 * undefined (null); force_list wraps the non-list values of those keys in a list, as the
 * cbor2 object_hook does. Everything else -- tags, byte strings, indefinite lengths, other
 * simple values, a missing record_path step, a row that is not a map, items near max_depth,
 * invalid UTF-8 -- goes the slow way, so the lines always mean what the cbor2 + orjson path
 * writes and every bad item is reported by it. `keys` holds the top-level keys of the rows
 * written (and possibly of a row the caller decodes again), so the engine need not parse the
 * lines again to learn them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Out;

enum { OK = 0, INCOMPLETE = 1, SLOW = 2, NOMEM = 3 };

#define MAX_KEYS_CHECKED 64 /* maps with more keys go the slow way (duplicate check) */

static int out_reserve(Out *o, Py_ssize_t extra) {
    if (o->len + extra <= o->cap) return 0;
    Py_ssize_t cap = o->cap ? o->cap : 1 << 16;
    while (cap < o->len + extra) cap *= 2;
    char *data = PyMem_RawRealloc(o->data, (size_t)cap);
    if (!data) return -1;
    o->data = data;
    o->cap = cap;
    return 0;
}

static inline int out_put(Out *o, const char *s, Py_ssize_t n) {
    if (out_reserve(o, n) < 0) return -1;
    memcpy(o->data + o->len, s, (size_t)n);
    o->len += n;
    return 0;
}

static inline int out_byte(Out *o, char c) {
    if (out_reserve(o, 1) < 0) return -1;
    o->data[o->len++] = c;
    return 0;
}

/* The head at *p: major type, additional info, argument. */
static int read_head(const uint8_t *b, Py_ssize_t n, Py_ssize_t *p, int *major, int *ai,
                     uint64_t *arg) {
    if (*p >= n) return INCOMPLETE;
    uint8_t ib = b[*p];
    *major = ib >> 5;
    *ai = ib & 31;
    Py_ssize_t need = *ai < 24 ? 0 : *ai == 24 ? 1 : *ai == 25 ? 2 : *ai == 26 ? 4 : *ai == 27 ? 8 : -1;
    if (need < 0) return SLOW; /* indefinite length, or reserved */
    if (*p + 1 + need > n) return INCOMPLETE;
    uint64_t v = *ai < 24 ? (uint64_t)*ai : 0;
    for (Py_ssize_t i = 0; i < need; i++) v = (v << 8) | b[*p + 1 + i];
    *arg = v;
    *p += 1 + need;
    return OK;
}

/* Strict UTF-8, as Python decodes it: no overlongs, no surrogates, nothing past U+10FFFF. */
static int valid_utf8(const uint8_t *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n) return 0;
            uint8_t c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && c1 < 0xA0) return 0; /* overlong */
            if (c == 0xED && c1 > 0x9F) return 0; /* surrogate */
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n) return 0;
            uint8_t c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if (c == 0xF0 && c1 < 0x90) return 0; /* overlong */
            if (c == 0xF4 && c1 > 0x8F) return 0; /* past U+10FFFF */
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

static const char HEX[] = "0123456789abcdef";

static int put_json_string(Out *o, const uint8_t *s, Py_ssize_t n) {
    /* one pass counts what escaping adds, so the output grows by exactly that */
    Py_ssize_t extra = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c < 0x20)
            extra += (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') ? 1 : 5;
        else if (c == '"' || c == '\\')
            extra += 1;
    }
    if (out_reserve(o, n + extra + 2) < 0) return -1;
    char *d = o->data + o->len;
    *d++ = '"';
    if (!extra) {
        memcpy(d, s, (size_t)n);
        d += n;
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            uint8_t c = s[i];
            if (c >= 0x20 && c != '"' && c != '\\') {
                *d++ = (char)c;
                continue;
            }
            *d++ = '\\';
            switch (c) {
            case '"': *d++ = '"'; break;
            case '\\': *d++ = '\\'; break;
            case '\n': *d++ = 'n'; break;
            case '\r': *d++ = 'r'; break;
            case '\t': *d++ = 't'; break;
            case '\b': *d++ = 'b'; break;
            case '\f': *d++ = 'f'; break;
            default:
                *d++ = 'u'; *d++ = '0'; *d++ = '0';
                *d++ = HEX[c >> 4]; *d++ = HEX[c & 15];
            }
        }
    }
    *d++ = '"';
    o->len = d - o->data;
    return 0;
}

static int put_uint(Out *o, uint64_t v, int negative_plus_one) {
    /* negative_plus_one: write -(v + 1), the value of a CBOR negative integer */
    char tmp[32];
    int i = 31;
    tmp[i] = 0;
    if (negative_plus_one) {
        /* v + 1 may be 2**64: add one in decimal */
        char digits[24];
        int k = 0;
        uint64_t x = v;
        do { digits[k++] = (char)('0' + x % 10); x /= 10; } while (x);
        int carry = 1;
        for (int j = 0; j < k && carry; j++) {
            int d = digits[j] - '0' + carry;
            carry = d / 10;
            digits[j] = (char)('0' + d % 10);
        }
        if (carry) digits[k++] = '1';
        if (out_byte(o, '-') < 0) return -1;
        for (int j = k - 1; j >= 0; j--)
            if (out_byte(o, digits[j]) < 0) return -1;
        return 0;
    }
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    return out_put(o, tmp + i, 31 - i);
}

static double half_to_double(uint16_t h) {
    int exp = (h >> 10) & 0x1f;
    int mant = h & 0x3ff;
    double val;
    if (exp == 0) val = ldexp(mant, -24);
    else if (exp != 31) val = ldexp(mant + 1024, exp - 25);
    else val = mant == 0 ? INFINITY : NAN;
    return (h & 0x8000) ? -val : val;
}

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
static const uint64_t IPOW10[] = {1, 10, 100, 1000, 10000, 100000, 1000000};

/* d (finite) as repr() writes it when it is a decimal of at most 6 places in repr's fixed
 * notation (1e-4 <= |d| < 1e15): the first count of places whose integer n = |d| * 10^k
 * divides back to d exactly is the shortest decimal that reads back as d, which is repr's
 * choice. Prices and measures mostly are; 0 when not (repr then writes it, ~5x slower). */
static int put_short_decimal(Out *o, double d) {
    double a = fabs(d);
    if (!(a >= 1e-4 && a < 1e15)) return 0;
    for (int k = 0; k <= 6; k++) {
        double v = a * POW10[k];
        if (v >= 9007199254740992.0) return 0; /* 2^53: no longer an exact integer */
        double n = nearbyint(v);
        if (n / POW10[k] != a) continue;
        uint64_t whole = (uint64_t)n / IPOW10[k], frac = (uint64_t)n % IPOW10[k];
        if (d < 0 && out_byte(o, '-') < 0) return -1;
        if (put_uint(o, whole, 0) < 0 || out_byte(o, '.') < 0) return -1;
        char digits[8];
        int places = k ? k : 1; /* 3.0, as repr */
        for (int i = places - 1; i >= 0; i--) {
            digits[i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        return out_put(o, digits, places) < 0 ? -1 : 1;
    }
    return 0;
}

static int put_double(Out *o, double d) {
    if (isnan(d) || isinf(d)) return out_put(o, "null", 4);
    int fast = put_short_decimal(o, d);
    if (fast != 0) return fast < 0 ? -1 : 0;
    char *s = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!s) return -1;
    int rc = out_put(o, s, (Py_ssize_t)strlen(s));
    PyMem_Free(s);
    return rc;
}

#define MAX_NAMES 32 /* record_path steps and force_list keys the transcoder takes */
#define MAX_WALK_DEPTH 256

typedef struct {
    const uint8_t *b; /* the buffer and its length */
    Py_ssize_t n;
    int max_depth;
    Py_ssize_t npath, nforce;
    const char *path[MAX_NAMES], *force[MAX_NAMES];
    Py_ssize_t path_len[MAX_NAMES], force_len[MAX_NAMES];
    Out skip; /* where values off the record path are written, to check them, and dropped */
    Py_ssize_t rows;
    PyObject *keys;  /* a set: the top-level keys of the rows */
    int row_map;     /* the next map is a row's */
    Out shape, last; /* a row's keys (lengths and bytes), and the previous row's */
} Ctx;

static int item(Ctx *c, Py_ssize_t *p, Out *o, int depth);

static int text(Ctx *c, Py_ssize_t *p, uint64_t len, Out *o) {
    if (len > (uint64_t)(c->n - *p)) return INCOMPLETE;
    const uint8_t *s = c->b + *p;
    if (!valid_utf8(s, (Py_ssize_t)len)) return SLOW;
    if (put_json_string(o, s, (Py_ssize_t)len) < 0) return NOMEM;
    *p += (Py_ssize_t)len;
    return OK;
}

static int named(const char *const *names, const Py_ssize_t *lens, Py_ssize_t count,
                 const uint8_t *key, uint64_t len) {
    for (Py_ssize_t i = 0; i < count; i++)
        if ((uint64_t)lens[i] == len && memcmp(names[i], key, (size_t)len) == 0) return (int)i;
    return -1;
}

/* A map's next key (text, not seen before in this map): its bytes, length, and JSON. */
static int map_key(Ctx *c, Py_ssize_t *p, const uint8_t **keys, uint64_t *lens, uint64_t i,
                   Out *o) {
    int major, ai, rc;
    uint64_t len;
    if ((rc = read_head(c->b, c->n, p, &major, &ai, &len)) != OK) return rc;
    if (major != 3) return SLOW; /* keys must be text */
    if (len > (uint64_t)(c->n - *p)) return INCOMPLETE;
    for (uint64_t j = 0; j < i; j++) /* a key twice: cbor2 keeps the last value */
        if (lens[j] == len && memcmp(keys[j], c->b + *p, (size_t)len) == 0) return SLOW;
    keys[i] = c->b + *p;
    lens[i] = len;
    return text(c, p, len, o);
}

/* A row's keys into c->keys; most rows have the keys of the row before, which adds none. */
static int note_keys(Ctx *c, const uint8_t **keys, const uint64_t *lens, uint64_t count) {
    c->shape.len = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (out_put(&c->shape, (const char *)&lens[i], sizeof lens[i]) < 0 ||
            out_put(&c->shape, (const char *)keys[i], (Py_ssize_t)lens[i]) < 0)
            return NOMEM;
    }
    if (c->shape.len == c->last.len &&
        (c->last.len == 0 || memcmp(c->shape.data, c->last.data, (size_t)c->last.len) == 0))
        return OK;
    Out swap = c->last;
    c->last = c->shape;
    c->shape = swap;
    for (uint64_t i = 0; i < count; i++) {
        PyObject *name = PyUnicode_DecodeUTF8((const char *)keys[i], (Py_ssize_t)lens[i], NULL);
        if (!name) return NOMEM; /* checked UTF-8 already: only memory can fail */
        int rc = PySet_Add(c->keys, name);
        Py_DECREF(name);
        if (rc < 0) return NOMEM;
    }
    return OK;
}

static int map(Ctx *c, Py_ssize_t *p, uint64_t count, Out *o, int depth) {
    int is_row = c->row_map;
    c->row_map = 0;
    if (count > MAX_KEYS_CHECKED) return SLOW;
    const uint8_t *keys[MAX_KEYS_CHECKED];
    uint64_t lens[MAX_KEYS_CHECKED];
    int rc;
    if (out_byte(o, '{') < 0) return NOMEM;
    for (uint64_t i = 0; i < count; i++) {
        if (i && out_byte(o, ',') < 0) return NOMEM;
        if ((rc = map_key(c, p, keys, lens, i, o)) != OK) return rc;
        if (out_byte(o, ':') < 0) return NOMEM;
        /* force_list: xmltodict's one-element lists, as cbor2's object_hook makes them */
        int wrap = 0;
        if (c->nforce && named(c->force, c->force_len, c->nforce, keys[i], lens[i]) >= 0) {
            if (*p >= c->n) return INCOMPLETE;
            wrap = c->b[*p] >> 5 != 4;
        }
        if (wrap && out_byte(o, '[') < 0) return NOMEM;
        if ((rc = item(c, p, o, depth + 1)) != OK) return rc;
        if (wrap && out_byte(o, ']') < 0) return NOMEM;
    }
    if (is_row && (rc = note_keys(c, keys, lens, count)) != OK) return rc;
    return out_byte(o, '}') < 0 ? NOMEM : OK;
}

static int item(Ctx *c, Py_ssize_t *p, Out *o, int depth) {
    if (depth >= c->max_depth - 1) return SLOW; /* cbor2 decides what too deep is */
    int major, ai, rc;
    uint64_t arg;
    if ((rc = read_head(c->b, c->n, p, &major, &ai, &arg)) != OK) return rc;
    switch (major) {
    case 0:
        return put_uint(o, arg, 0) < 0 ? NOMEM : OK;
    case 1:
        return put_uint(o, arg, 1) < 0 ? NOMEM : OK;
    case 3:
        return text(c, p, arg, o);
    case 4:
        if (out_byte(o, '[') < 0) return NOMEM;
        for (uint64_t i = 0; i < arg; i++) {
            if (i && out_byte(o, ',') < 0) return NOMEM;
            if ((rc = item(c, p, o, depth + 1)) != OK) return rc;
        }
        return out_byte(o, ']') < 0 ? NOMEM : OK;
    case 5:
        return map(c, p, arg, o, depth);
    case 7:
        switch (ai) {
        case 20: return out_put(o, "false", 5) < 0 ? NOMEM : OK;
        case 21: return out_put(o, "true", 4) < 0 ? NOMEM : OK;
        case 22:
        case 23: return out_put(o, "null", 4) < 0 ? NOMEM : OK;
        case 25: return put_double(o, half_to_double((uint16_t)arg)) < 0 ? NOMEM : OK;
        case 26: {
            uint32_t bits = (uint32_t)arg;
            float f;
            memcpy(&f, &bits, 4);
            return put_double(o, (double)f) < 0 ? NOMEM : OK;
        }
        case 27: {
            double d;
            memcpy(&d, &arg, 8);
            return put_double(o, d) < 0 ? NOMEM : OK;
        }
        default: return SLOW; /* other simple values */
        }
    default:
        return SLOW; /* byte strings (2), tags (6) */
    }
}

/* A record: a map, one JSON line. */
static int row(Ctx *c, Py_ssize_t *p, Out *o, int depth) {
    if (*p >= c->n) return INCOMPLETE;
    if (c->b[*p] >> 5 != 5) return SLOW; /* not a map: a bad record, cbor2's to name */
    c->row_map = 1;
    int rc = item(c, p, o, depth);
    c->row_map = 0;
    if (rc != OK) return rc;
    c->rows++;
    return out_byte(o, '\n') < 0 ? NOMEM : OK;
}

/* The records at record_path[level:] below the value at *p, as the Python path's `descend`
 * finds them: lists on the way are walked element by element, a final list gives its
 * elements, null gives nothing; a missing step is cbor2's to report (SLOW). */
static int records(Ctx *c, Py_ssize_t *p, Out *o, int depth, Py_ssize_t level) {
    if (depth >= c->max_depth - 1) return SLOW;
    if (*p >= c->n) return INCOMPLETE;
    uint8_t first = c->b[*p];
    if (first == 0xf6) { /* null */
        (*p)++;
        return OK;
    }
    if (level == c->npath && first >> 5 != 4) return row(c, p, o, depth);
    int major, ai, rc;
    uint64_t arg;
    if ((rc = read_head(c->b, c->n, p, &major, &ai, &arg)) != OK) return rc;
    if (major == 4) {
        for (uint64_t i = 0; i < arg; i++) {
            if (level == c->npath) {
                if (*p >= c->n) return INCOMPLETE;
                if (c->b[*p] == 0xf6) { /* a null element gives nothing */
                    (*p)++;
                    continue;
                }
                rc = row(c, p, o, depth + 1);
            } else {
                rc = records(c, p, o, depth + 1, level);
            }
            if (rc != OK) return rc;
        }
        return OK;
    }
    if (major != 5 || arg > MAX_KEYS_CHECKED) return SLOW;
    const uint8_t *keys[MAX_KEYS_CHECKED];
    uint64_t lens[MAX_KEYS_CHECKED];
    int found = 0;
    for (uint64_t i = 0; i < arg; i++) {
        c->skip.len = 0;
        if ((rc = map_key(c, p, keys, lens, i, &c->skip)) != OK) return rc;
        if ((Py_ssize_t)lens[i] == c->path_len[level] &&
            memcmp(keys[i], c->path[level], (size_t)lens[i]) == 0) {
            found = 1;
            rc = records(c, p, o, depth + 1, level + 1);
        } else {
            c->skip.len = 0; /* checked as cbor2 would decode it, then dropped */
            rc = item(c, p, &c->skip, depth + 1);
        }
        if (rc != OK) return rc;
    }
    return found ? OK : SLOW;
}

static int names(PyObject *seq, const char **out, Py_ssize_t *lens, Py_ssize_t *count) {
    PyObject *fast = PySequence_Fast(seq, "record_path and force_list must be sequences");
    if (!fast) return -1;
    Py_ssize_t size = PySequence_Fast_GET_SIZE(fast);
    if (size > MAX_NAMES) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "at most 32 record_path steps and force_list keys");
        return -1;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        PyObject *name = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyBytes_Check(name)) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_TypeError, "names must be bytes (UTF-8)");
            return -1;
        }
        out[i] = PyBytes_AS_STRING(name);
        lens[i] = PyBytes_GET_SIZE(name);
    }
    *count = size;
    Py_DECREF(fast); /* the caller's tuple keeps the bytes alive */
    return 0;
}

static PyObject *lines(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    Py_ssize_t pos;
    int max_depth;
    PyObject *path = NULL, *force = NULL;
    if (!PyArg_ParseTuple(args, "y*ni|OO", &view, &pos, &max_depth, &path, &force)) return NULL;
    Ctx c;
    memset(&c, 0, sizeof c);
    c.b = view.buf;
    c.n = view.len;
    /* deeper items go to cbor2: this walk recurses (about 1 KB of stack a map level) */
    c.max_depth = max_depth < MAX_WALK_DEPTH ? max_depth : MAX_WALK_DEPTH;
    if ((path && names(path, c.path, c.path_len, &c.npath) < 0) ||
        (force && names(force, c.force, c.force_len, &c.nforce) < 0)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (pos < 0 || pos > c.n) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos outside the buffer");
        return NULL;
    }
    c.keys = PySet_New(NULL);
    if (!c.keys) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Out o = {NULL, 0, 0};
    Py_ssize_t items = 0;
    int slow = 0, rc = OK;
    while (pos < c.n) {
        Py_ssize_t p = pos, mark = o.len, rows = c.rows;
        rc = c.npath ? records(&c, &p, &o, 0, 0) : row(&c, &p, &o, 0);
        if (rc != OK) {
            o.len = mark;
            c.rows = rows;
            if (rc == SLOW) slow = 1;
            break;
        }
        pos = p;
        items++;
    }
    PyBuffer_Release(&view);
    PyMem_RawFree(c.skip.data);
    PyMem_RawFree(c.shape.data);
    PyMem_RawFree(c.last.data);
    if (rc == NOMEM) {
        PyMem_RawFree(o.data);
        Py_DECREF(c.keys);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    PyObject *json = PyBytes_FromStringAndSize(o.data ? o.data : "", o.len);
    PyMem_RawFree(o.data);
    if (!json) {
        Py_DECREF(c.keys);
        return NULL;
    }
    return Py_BuildValue("(NnnnON)", json, pos, items, c.rows, slow ? Py_True : Py_False, c.keys);
}

static PyMethodDef methods[] = {
    {"lines", lines, METH_VARARGS,
     "lines(buf, pos, max_depth, record_path=(), force_list=()) -> (json, pos, items, rows, "
     "slow, keys): the records of the complete items of buf from pos as JSON lines; stops at an "
     "incomplete item or one cbor2 must decode."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cbor2json", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__cbor2json(void) { return PyModule_Create(&module); }

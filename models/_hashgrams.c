/* The hashed n-gram featuriser of models/featurize.py, in C: the same ids, bit for bit.
 *
 * featurize.py is the reference (numpy, vectorised over a batch) and the fallback when this
 * module is not built; tests/models/test_hashgrams.py checks that both give the same ids.
 * Input: the batch as featurize.py joins it (each text lower-cased, padded by a space at
 * both ends, texts separated by a 0 byte, UTF-8). Output: int64 ids [n, width], 0 = padding.
 *
 * Per text: bytes that are not ASCII letters, digits or part of a multi-byte character fold
 * to a space, runs of spaces to one; the features are, in this order, word unigrams, word
 * bigrams, then character n-grams for n = char_min..char_max, each in text order. A span's
 * hash is the polynomial sum of b[j] * P^(end-1-j) mod 2^64 (P the FNV prime), mixed with
 * splitmix64's finaliser after a salt per kind. A text with more than `width` features keeps
 * its unigrams and each other feature whose hash bits 40..55 fall under its budget share.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BASE 0x100000001B3ULL
#define SALT_WORD 0x9E3779B97F4A7C15ULL
#define SALT_BIGRAM 0xC2B2AE3D27D4EB4FULL
#define SALT_CHAR 0x165667B19E3779F9ULL
#define SPACE 32

static uint64_t mix(uint64_t h) {
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBULL;
    h ^= h >> 31;
    return h;
}

static int is_word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 128;
}

static uint64_t span_hash(const unsigned char *b, Py_ssize_t start, Py_ssize_t end) {
    uint64_t h = 0;
    for (Py_ssize_t j = start; j < end; j++) h = h * BASE + b[j];
    return h;
}

/* One text's features into ids[0..width). `seg` is its folded bytes, `hashes` scratch. */
static void one_text(const unsigned char *seg, Py_ssize_t len, int64_t *ids, Py_ssize_t width,
                     uint64_t buckets, int char_min, int char_max, int bigrams,
                     uint64_t *hashes, unsigned char *unigram) {
    Py_ssize_t count = 0, words = 0;
    uint64_t previous = 0;
    int have_previous = 0;
    /* word unigrams first, then bigrams: two passes over the words */
    for (int pass = 0; pass < (bigrams ? 2 : 1); pass++) {
        have_previous = 0;
        for (Py_ssize_t i = 0; i < len;) {
            if (seg[i] == SPACE) { i++; continue; }
            Py_ssize_t end = i;
            while (end < len && seg[end] != SPACE) end++;
            uint64_t h = span_hash(seg, i, end);
            if (pass == 0) {
                hashes[count] = mix(h ^ SALT_WORD);
                unigram[count++] = 1;
                words++;
            } else if (have_previous) {
                uint64_t pair = mix(previous ^ SALT_BIGRAM) * BASE + h;
                hashes[count] = mix(pair ^ SALT_BIGRAM);
                unigram[count++] = 0;
            }
            previous = h;
            have_previous = 1;
            i = end;
        }
    }
    for (int n = char_min; n <= char_max; n++) {
        uint64_t salt = SALT_CHAR + (uint64_t)n;
        for (Py_ssize_t i = 0; i + n <= len; i++) {
            hashes[count] = mix(span_hash(seg, i, i + n) ^ salt);
            unigram[count++] = 0;
        }
    }
    uint64_t cut = 65536;
    if (count > width) {
        Py_ssize_t budget = width - words > 0 ? width - words : 0;
        Py_ssize_t others = count - words > 1 ? count - words : 1;
        double share = (double)budget / (double)others;
        double scaled = share * 65536.0 * 1.5;
        cut = (uint64_t)(scaled < 65536.0 ? scaled : 65536.0);
    }
    Py_ssize_t rank = 0;
    for (Py_ssize_t k = 0; k < count && rank < width; k++) {
        if (!unigram[k] && ((hashes[k] >> 40) & 0xFFFF) >= cut) continue;
        ids[rank++] = (int64_t)(hashes[k] % buckets) + 1;
    }
}

static PyObject *features(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t n, width;
    unsigned long long buckets;
    int char_min, char_max, bigrams;
    if (!PyArg_ParseTuple(args, "y*nnKiip", &data, &n, &width, &buckets, &char_min,
                          &char_max, &bigrams))
        return NULL;
    if (n < 0 || width < 1 || buckets < 1 || char_min < 1 || char_max < char_min) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "bad featuriser configuration");
        return NULL;
    }
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * width * (Py_ssize_t)sizeof(int64_t));
    const unsigned char *raw = (const unsigned char *)data.buf;
    Py_ssize_t size = data.len;
    /* folded bytes of one text, and room for its features: at most a word and a bigram per
       byte plus one n-gram per byte and n */
    unsigned char *seg = malloc(size + 1);
    Py_ssize_t most = (size + 1) * (2 + (char_max - char_min + 1));
    uint64_t *hashes = malloc(most * sizeof(uint64_t));
    unsigned char *unigram = malloc(most);
    if (out == NULL || seg == NULL || hashes == NULL || unigram == NULL) {
        free(seg); free(hashes); free(unigram);
        Py_XDECREF(out);
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    int64_t *ids = (int64_t *)PyByteArray_AS_STRING(out);
    memset(ids, 0, n * width * sizeof(int64_t));
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t item = 0, pos = 0;
    while (item < n && pos <= size) {
        Py_ssize_t len = 0;
        unsigned char last = 0;  /* the separator before the text */
        for (; pos < size && raw[pos] != 0; pos++) {
            unsigned char c = is_word_byte(raw[pos]) ? raw[pos] : SPACE;
            if (!(c == SPACE && last == SPACE)) seg[len++] = c;
            last = c;
        }
        pos++;  /* past the separator */
        one_text(seg, len, ids + item * width, width, (uint64_t)buckets, char_min, char_max,
                 bigrams, hashes, unigram);
        item++;
    }
    Py_END_ALLOW_THREADS
    free(seg); free(hashes); free(unigram);
    PyBuffer_Release(&data);
    return out;
}

static PyMethodDef methods[] = {
    {"features", features, METH_VARARGS,
     "features(data, n, width, buckets, char_min, char_max, word_bigrams) -> bytearray of "
     "int64 ids [n, width]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hashgrams",
                                    "The hashed n-gram featuriser in C.", -1, methods};

PyMODINIT_FUNC PyInit__hashgrams(void) { return PyModule_Create(&module); }

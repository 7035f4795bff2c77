/*
 * natflow.flowlogs._parquet: a small Parquet reader for flat columns, in compiled code.
 *
 * read_footer parses the file's FileMetaData (Thrift compact protocol) into the leaf columns and the
 * column chunks of each row group. decode_chunk decodes one column chunk of a flat BYTE_ARRAY, INT32
 * or INT64 column into (entries, offsets, indices): the chunk's distinct entries (the dictionary's,
 * then those of the PLAIN pages) and, per row, the number of its entry or -1 for null.
 * Decompression is the caller's (a Python callable), so this module needs nothing but Python.h.
 *
 * The input is untrusted: every length, offset and count is checked before it is used, each byte
 * of the input is read once (an mmap may change under us), and corrupt input raises ValueError.
 * decode_chunk releases the GIL while it decodes a page's levels and values.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T_BOOLEAN, T_INT32, T_INT64, T_INT96, T_FLOAT, T_DOUBLE, T_BYTE_ARRAY, T_FIXED_LEN_BYTE_ARRAY };
enum { R_REQUIRED, R_OPTIONAL, R_REPEATED };
enum { PAGE_DATA = 0, PAGE_INDEX = 1, PAGE_DICTIONARY = 2, PAGE_DATA_V2 = 3 };
enum { E_PLAIN = 0, E_PLAIN_DICTIONARY = 2, E_RLE = 3, E_BIT_PACKED = 4, E_RLE_DICTIONARY = 8 };
enum { LOGICAL_NONE, LOGICAL_STRING, LOGICAL_SIGNED_INT, LOGICAL_OTHER };

#define MAX_NESTING 64 /* Thrift structs and schema groups; real files need fewer than 10 */

typedef struct {
    char message[160];
} Error;

static int fail(Error *error, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(error->message, sizeof error->message, format, args);
    va_end(args);
    return -1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Thrift compact protocol                                                                        */
/* ---------------------------------------------------------------------------------------------- */

enum {
    TT_STOP = 0, TT_TRUE = 1, TT_FALSE = 2, TT_BYTE = 3, TT_I16 = 4, TT_I32 = 5, TT_I64 = 6,
    TT_DOUBLE = 7, TT_BINARY = 8, TT_LIST = 9, TT_SET = 10, TT_MAP = 11, TT_STRUCT = 12,
};

typedef struct {
    const uint8_t *p, *end;
    Error *error;
} Thrift;

static int truncated(Thrift *t) { return fail(t->error, "parquet: truncated or corrupt metadata"); }

static int read_uvarint(Thrift *t, uint64_t *out) {
    uint64_t value = 0;
    *out = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (t->p >= t->end) return truncated(t);
        uint8_t byte = *t->p++;
        if (shift == 63 && byte > 1) return truncated(t);
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return truncated(t);
}

static int read_zigzag(Thrift *t, int64_t *out) {
    uint64_t raw;
    if (read_uvarint(t, &raw) < 0) return -1;
    *out = (int64_t)(raw >> 1) ^ -(int64_t)(raw & 1);
    return 0;
}

/* Reads a field header: *type = TT_STOP at the struct's end. */
static int read_field(Thrift *t, int64_t *last_id, int64_t *id, int *type) {
    *type = TT_STOP;
    *id = 0;
    if (t->p >= t->end) return truncated(t);
    uint8_t byte = *t->p++;
    *type = byte & 0x0F;
    if (*type == TT_STOP) return 0;
    if (*type > TT_STRUCT) return truncated(t);
    if (byte >> 4) {
        *id = *last_id + (byte >> 4);
    } else {
        if (read_zigzag(t, id) < 0) return -1;
        if (*id < INT16_MIN || *id > INT16_MAX) return truncated(t);
    }
    *last_id = *id;
    return 0;
}

/* A list or set header: element type and size (checked against the bytes left: each element takes one at least). */
static int read_list_header(Thrift *t, int field_type, int *element_type, int64_t *size) {
    if (field_type != TT_LIST && field_type != TT_SET) return truncated(t);
    if (t->p >= t->end) return truncated(t);
    uint8_t byte = *t->p++;
    *element_type = byte & 0x0F;
    uint64_t n = byte >> 4;
    if (n == 15 && read_uvarint(t, &n) < 0) return -1;
    if (*element_type == TT_STOP || *element_type > TT_STRUCT || n > (uint64_t)(t->end - t->p)) return truncated(t);
    *size = (int64_t)n;
    return 0;
}

/* Skips one value of the given type; in a collection a boolean takes a byte, in a struct field none. */
static int skip_value(Thrift *t, int type, int in_collection, int depth) {
    if (depth > MAX_NESTING) return fail(t->error, "parquet: metadata nested too deep");
    uint64_t n;
    switch (type) {
    case TT_TRUE:
    case TT_FALSE:
        if (!in_collection) return 0;
        /* fall through */
    case TT_BYTE:
        if (t->p >= t->end) return truncated(t);
        t->p++;
        return 0;
    case TT_I16:
    case TT_I32:
    case TT_I64:
        return read_uvarint(t, &n);
    case TT_DOUBLE:
        if (t->end - t->p < 8) return truncated(t);
        t->p += 8;
        return 0;
    case TT_BINARY:
        if (read_uvarint(t, &n) < 0) return -1;
        if (n > (uint64_t)(t->end - t->p)) return truncated(t);
        t->p += n;
        return 0;
    case TT_LIST:
    case TT_SET: {
        int element_type;
        int64_t size;
        if (read_list_header(t, type, &element_type, &size) < 0) return -1;
        for (int64_t i = 0; i < size; i++)
            if (skip_value(t, element_type, 1, depth + 1) < 0) return -1;
        return 0;
    }
    case TT_MAP: {
        if (read_uvarint(t, &n) < 0) return -1;
        if (n == 0) return 0;
        if (t->p >= t->end || n > (uint64_t)(t->end - t->p) / 2) return truncated(t);
        uint8_t types = *t->p++;
        for (uint64_t i = 0; i < n; i++) {
            if (skip_value(t, types >> 4, 1, depth + 1) < 0) return -1;
            if (skip_value(t, types & 0x0F, 1, depth + 1) < 0) return -1;
        }
        return 0;
    }
    case TT_STRUCT: {
        int64_t last_id = 0, id;
        for (;;) {
            int field_type;
            if (read_field(t, &last_id, &id, &field_type) < 0) return -1;
            if (field_type == TT_STOP) return 0;
            if (skip_value(t, field_type, 0, depth + 1) < 0) return -1;
        }
    }
    default:
        return truncated(t);
    }
}

static int read_i64(Thrift *t, int type, int64_t *out) {
    if (type != TT_I16 && type != TT_I32 && type != TT_I64) return truncated(t);
    return read_zigzag(t, out);
}

static int read_i32(Thrift *t, int type, int32_t *out) {
    int64_t value = 0;
    if (read_i64(t, type, &value) < 0) return -1;
    if (value < INT32_MIN || value > INT32_MAX) return truncated(t);
    *out = (int32_t)value;
    return 0;
}

static int read_binary(Thrift *t, int type, const uint8_t **data, int64_t *length) {
    uint64_t n;
    if (type != TT_BINARY || read_uvarint(t, &n) < 0) return truncated(t);
    if (n > (uint64_t)(t->end - t->p)) return truncated(t);
    *data = t->p;
    *length = (int64_t)n;
    t->p += n;
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* FileMetaData                                                                                   */
/* ---------------------------------------------------------------------------------------------- */

typedef struct {
    int32_t type, repetition, num_children, converted;
    int has_type, has_repetition, has_num_children, has_converted;
    int logical;
    const uint8_t *name;
    int64_t name_length; /* -1: none */
    int64_t parent;
} SchemaElement;

typedef struct {
    int64_t codec, start, size, num_values;
} ChunkInfo;

typedef struct {
    int64_t num_rows;
    int64_t n_chunks;
    ChunkInfo *chunks;
} RowGroupInfo;

typedef struct {
    int64_t element, max_definition_level;
    int repeated, nested;
} Leaf;

typedef struct {
    int64_t file_length;
    int64_t num_rows;
    int has_num_rows;
    SchemaElement *schema;
    int64_t n_schema; /* -1: not seen */
    RowGroupInfo *row_groups;
    int64_t n_row_groups; /* -1: not seen */
    Leaf *leaves;
    int64_t n_leaves;
} Footer;

static void footer_free(Footer *f) {
    free(f->schema);
    if (f->row_groups)
        for (int64_t i = 0; i < f->n_row_groups; i++) free(f->row_groups[i].chunks);
    free(f->row_groups);
    free(f->leaves);
}

/* LogicalType is a union: STRING is field 1, INTEGER (IntType: bitWidth, isSigned) field 10. */
static int read_logical_type(Thrift *t, int *logical, int depth) {
    int64_t last_id = 0, id;
    int field_type;
    *logical = LOGICAL_OTHER;
    for (;;) {
        if (read_field(t, &last_id, &id, &field_type) < 0) return -1;
        if (field_type == TT_STOP) return 0;
        if (id == 1 && field_type == TT_STRUCT) {
            *logical = LOGICAL_STRING;
        } else if (id == 10 && field_type == TT_STRUCT) {
            int64_t int_last = 0, int_id;
            int int_type, is_signed = 0;
            for (;;) {
                if (read_field(t, &int_last, &int_id, &int_type) < 0) return -1;
                if (int_type == TT_STOP) break;
                if (int_id == 2 && (int_type == TT_TRUE || int_type == TT_FALSE)) is_signed = int_type == TT_TRUE;
                else if (skip_value(t, int_type, 0, depth + 2) < 0) return -1;
            }
            *logical = is_signed ? LOGICAL_SIGNED_INT : LOGICAL_OTHER;
            continue;
        } else {
            *logical = LOGICAL_OTHER;
        }
        if (skip_value(t, field_type, 0, depth + 1) < 0) return -1;
    }
}

static int read_schema_element(Thrift *t, SchemaElement *el) {
    int64_t last_id = 0, id;
    int type;
    memset(el, 0, sizeof *el);
    el->name_length = -1;
    el->logical = LOGICAL_NONE;
    for (;;) {
        if (read_field(t, &last_id, &id, &type) < 0) return -1;
        if (type == TT_STOP) return 0;
        int rc;
        switch (id) {
        case 1: rc = read_i32(t, type, &el->type); el->has_type = 1; break;
        case 3: rc = read_i32(t, type, &el->repetition); el->has_repetition = 1; break;
        case 4: rc = read_binary(t, type, &el->name, &el->name_length); break;
        case 5: rc = read_i32(t, type, &el->num_children); el->has_num_children = 1; break;
        case 6: rc = read_i32(t, type, &el->converted); el->has_converted = 1; break;
        case 10: rc = type == TT_STRUCT ? read_logical_type(t, &el->logical, 2) : truncated(t); break;
        default: rc = skip_value(t, type, 0, 2);
        }
        if (rc < 0) return -1;
    }
}

static int read_column_metadata(Thrift *t, ChunkInfo *chunk) {
    int64_t last_id = 0, id, value = 0;
    int type;
    int64_t data_page_offset = -1, dictionary_page_offset = -1;
    int seen = 0; /* bits: codec, num_values, total_compressed_size, data_page_offset */
    for (;;) {
        if (read_field(t, &last_id, &id, &type) < 0) return -1;
        if (type == TT_STOP) break;
        if (id == 4 || id == 5 || id == 7 || id == 9 || id == 11) {
            if (read_i64(t, type, &value) < 0) return -1;
            switch (id) {
            case 4: chunk->codec = value; seen |= 1; break;
            case 5: chunk->num_values = value; seen |= 2; break;
            case 7: chunk->size = value; seen |= 4; break;
            case 9: data_page_offset = value; seen |= 8; break;
            case 11: dictionary_page_offset = value; break;
            }
        } else if (skip_value(t, type, 0, 4) < 0) {
            return -1;
        }
    }
    if (seen != 15) return fail(t->error, "parquet: column metadata lacks a required field");
    chunk->start = dictionary_page_offset > 0 ? dictionary_page_offset : data_page_offset;
    return 0;
}

static int read_column_chunk(Thrift *t, ChunkInfo *chunk, int64_t file_length) {
    int64_t last_id = 0, id;
    int type, has_metadata = 0, external = 0;
    for (;;) {
        if (read_field(t, &last_id, &id, &type) < 0) return -1;
        if (type == TT_STOP) break;
        if (id == 1 && type == TT_BINARY) {
            external = 1;
            if (skip_value(t, type, 0, 3) < 0) return -1;
        } else if (id == 3 && type == TT_STRUCT) {
            if (read_column_metadata(t, chunk) < 0) return -1;
            has_metadata = 1;
        } else if (skip_value(t, type, 0, 3) < 0) {
            return -1;
        }
    }
    if (external) return fail(t->error, "parquet: column chunk in an external file");
    if (!has_metadata) return fail(t->error, "parquet: column chunk without metadata (encrypted?)");
    if (chunk->start < 0 || chunk->size < 0 || chunk->start > file_length || chunk->size > file_length - chunk->start)
        return fail(t->error, "parquet: column chunk outside the file");
    return 0;
}

static int read_row_group(Thrift *t, RowGroupInfo *group, int64_t file_length) {
    int64_t last_id = 0, id;
    int type, has_num_rows = 0;
    group->n_chunks = -1;
    for (;;) {
        if (read_field(t, &last_id, &id, &type) < 0) return -1;
        if (type == TT_STOP) break;
        if (id == 1 && group->n_chunks < 0) {
            int element_type;
            int64_t n;
            if (read_list_header(t, type, &element_type, &n) < 0) return -1;
            if (element_type != TT_STRUCT) return truncated(t);
            group->chunks = calloc((size_t)n + 1, sizeof *group->chunks);
            if (!group->chunks) return fail(t->error, "parquet: out of memory");
            group->n_chunks = n;
            for (int64_t i = 0; i < n; i++)
                if (read_column_chunk(t, &group->chunks[i], file_length) < 0) return -1;
        } else if (id == 3) {
            if (read_i64(t, type, &group->num_rows) < 0) return -1;
            has_num_rows = 1;
        } else if (skip_value(t, type, 0, 2) < 0) {
            return -1;
        }
    }
    if (group->n_chunks < 0 || !has_num_rows || group->num_rows < 0)
        return fail(t->error, "parquet: row group lacks its columns or row count");
    return 0;
}

static int read_file_metadata(Thrift *t, Footer *f) {
    int64_t last_id = 0, id;
    int type;
    for (;;) {
        if (read_field(t, &last_id, &id, &type) < 0) return -1;
        if (type == TT_STOP) break;
        int element_type;
        int64_t n;
        if (id == 2 && f->n_schema < 0) {
            if (read_list_header(t, type, &element_type, &n) < 0) return -1;
            if (element_type != TT_STRUCT) return truncated(t);
            f->schema = calloc((size_t)n + 1, sizeof *f->schema);
            f->leaves = calloc((size_t)n + 1, sizeof *f->leaves);
            if (!f->schema || !f->leaves) return fail(t->error, "parquet: out of memory");
            f->n_schema = n;
            for (int64_t i = 0; i < n; i++)
                if (read_schema_element(t, &f->schema[i]) < 0) return -1;
        } else if (id == 3) {
            if (read_i64(t, type, &f->num_rows) < 0) return -1;
            f->has_num_rows = 1;
        } else if (id == 4 && f->n_row_groups < 0) {
            if (read_list_header(t, type, &element_type, &n) < 0) return -1;
            if (element_type != TT_STRUCT) return truncated(t);
            f->row_groups = calloc((size_t)n + 1, sizeof *f->row_groups);
            if (!f->row_groups) return fail(t->error, "parquet: out of memory");
            for (int64_t i = 0; i < n; i++) {
                f->n_row_groups = i + 1; /* so that footer_free frees what was read */
                if (read_row_group(t, &f->row_groups[i], f->file_length) < 0) return -1;
            }
            f->n_row_groups = n;
        } else if (skip_value(t, type, 0, 1) < 0) {
            return -1;
        }
    }
    if (f->n_schema < 1 || f->n_row_groups < 0 || !f->has_num_rows || f->num_rows < 0)
        return fail(t->error, "parquet: file metadata lacks its schema, row groups or row count");
    return 0;
}

/* Walks the schema subtree at schema[*next] (depth-first order), appending its leaves. */
static int walk_schema(Footer *f, int64_t *next, int64_t parent, int depth, int64_t max_def, int repeated,
                       Error *error) {
    if (depth > MAX_NESTING) return fail(error, "parquet: schema nested too deep");
    if (*next >= f->n_schema) return fail(error, "parquet: schema has fewer elements than its groups claim");
    int64_t index = (*next)++;
    SchemaElement *el = &f->schema[index];
    el->parent = parent;
    if (el->name_length < 0) return fail(error, "parquet: schema element without a name");
    if (depth > 0 && el->has_repetition) {
        if (el->repetition == R_OPTIONAL) max_def++;
        else if (el->repetition == R_REPEATED) repeated = 1;
    }
    int is_group = !el->has_type || (el->has_num_children && el->num_children > 0);
    if (is_group) {
        if (el->has_num_children && (el->num_children < 0 || el->num_children > f->n_schema - *next))
            return fail(error, "parquet: schema has fewer elements than its groups claim");
        int32_t children = el->has_num_children ? el->num_children : 0;
        for (int32_t c = 0; c < children; c++)
            if (walk_schema(f, next, index, depth + 1, max_def, repeated, error) < 0) return -1;
    } else {
        if (depth == 0) return fail(error, "parquet: schema root is not a group");
        Leaf *leaf = &f->leaves[f->n_leaves++];
        leaf->element = index;
        leaf->max_definition_level = max_def;
        leaf->repeated = repeated;
        leaf->nested = depth > 1;
    }
    return 0;
}

static const char *leaf_kind(const SchemaElement *el, const Leaf *leaf) {
    if (leaf->repeated || leaf->nested) return "other";
    if (el->type == T_BYTE_ARRAY && (el->logical == LOGICAL_STRING || (el->has_converted && el->converted == 0)))
        return "string";
    if ((el->type == T_INT32 || el->type == T_INT64) &&
        (el->logical == LOGICAL_NONE || el->logical == LOGICAL_SIGNED_INT) &&
        (!el->has_converted || (el->converted >= 15 && el->converted <= 18)))
        return "int";
    return "other";
}

/* The leaf's name: its own for a top-level column, the dotted path below the root otherwise. */
static PyObject *leaf_name(const Footer *f, const Leaf *leaf) {
    const SchemaElement *el = &f->schema[leaf->element];
    if (!leaf->nested) return PyUnicode_DecodeUTF8((const char *)el->name, el->name_length, "strict");
    int64_t length = -1;
    for (int64_t i = leaf->element; i > 0; i = f->schema[i].parent) length += f->schema[i].name_length + 1;
    char *path = malloc((size_t)length + 1);
    if (!path) return PyErr_NoMemory();
    int64_t end = length;
    for (int64_t i = leaf->element; i > 0; i = f->schema[i].parent) {
        end -= f->schema[i].name_length;
        memcpy(path + end, f->schema[i].name, (size_t)f->schema[i].name_length);
        if (end > 0) path[--end] = '.';
    }
    PyObject *name = PyUnicode_DecodeUTF8(path, length, "strict");
    free(path);
    return name;
}

static PyObject *footer_to_python(const Footer *f) {
    PyObject *columns = PyList_New(f->n_leaves), *row_groups = PyList_New(f->n_row_groups), *result = NULL;
    if (!columns || !row_groups) goto done;
    for (int64_t i = 0; i < f->n_leaves; i++) {
        const Leaf *leaf = &f->leaves[i];
        const SchemaElement *el = &f->schema[leaf->element];
        PyObject *name = leaf_name(f, leaf);
        if (!name) goto done;
        PyObject *column = Py_BuildValue("(NiLs)", name, (int)el->type, (long long)leaf->max_definition_level,
                                         leaf_kind(el, leaf));
        if (!column) goto done;
        PyList_SET_ITEM(columns, i, column);
    }
    for (int64_t g = 0; g < f->n_row_groups; g++) {
        const RowGroupInfo *group = &f->row_groups[g];
        PyObject *chunks = PyList_New(group->n_chunks);
        if (!chunks) goto done;
        for (int64_t c = 0; c < group->n_chunks; c++) {
            const ChunkInfo *k = &group->chunks[c];
            PyObject *chunk = Py_BuildValue("(LLLL)", (long long)k->codec, (long long)k->start, (long long)k->size,
                                            (long long)k->num_values);
            if (!chunk) {
                Py_DECREF(chunks);
                goto done;
            }
            PyList_SET_ITEM(chunks, c, chunk);
        }
        PyObject *row_group = Py_BuildValue("(LN)", (long long)group->num_rows, chunks);
        if (!row_group) goto done;
        PyList_SET_ITEM(row_groups, g, row_group);
    }
    result = Py_BuildValue("(LOO)", (long long)f->num_rows, columns, row_groups);
done:
    Py_XDECREF(columns);
    Py_XDECREF(row_groups);
    return result;
}

static PyObject *read_footer(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *keywords[] = {"data", NULL};
    PyObject *data;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:read_footer", keywords, &data)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    const uint8_t *bytes = view.buf;
    int64_t length = view.len;
    Footer f = {.file_length = length, .n_schema = -1, .n_row_groups = -1};
    Error error = {{0}};
    PyObject *result = NULL;
    if (length < 12 || memcmp(bytes, "PAR1", 4) != 0 || memcmp(bytes + length - 4, "PAR1", 4) != 0) {
        fail(&error, "parquet: not a Parquet file (no PAR1 magic at both ends)");
        goto done;
    }
    uint32_t footer_length = (uint32_t)bytes[length - 8] | (uint32_t)bytes[length - 7] << 8 |
                             (uint32_t)bytes[length - 6] << 16 | (uint32_t)bytes[length - 5] << 24;
    if (footer_length > (uint64_t)length - 12) {
        fail(&error, "parquet: footer length %u exceeds the file", footer_length);
        goto done;
    }
    Thrift t = {.p = bytes + length - 8 - footer_length, .end = bytes + length - 8, .error = &error};
    if (read_file_metadata(&t, &f) < 0) goto done;
    int64_t next = 0;
    if (walk_schema(&f, &next, -1, 0, 0, 0, &error) < 0) goto done;
    if (next != f.n_schema) {
        fail(&error, "parquet: schema has elements outside its root");
        goto done;
    }
    for (int64_t g = 0; g < f.n_row_groups; g++)
        if (f.row_groups[g].n_chunks != f.n_leaves) {
            fail(&error, "parquet: row group has %lld column chunks for %lld columns",
                 (long long)f.row_groups[g].n_chunks, (long long)f.n_leaves);
            goto done;
        }
    result = footer_to_python(&f);
done:
    if (!result && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, error.message);
    footer_free(&f);
    PyBuffer_Release(&view);
    return result;
}

/* ---------------------------------------------------------------------------------------------- */
/* RLE / bit-packed hybrid                                                                        */
/* ---------------------------------------------------------------------------------------------- */

/* Unpacks `groups` groups of 8 values of BW bits (BW bytes a group). Reads up to 40 bytes from a group's
 * start (a 64-bit load at its last value's byte), so the caller keeps 40 readable bytes from each group. */
#define DEFINE_UNPACK(BW)                                                                   \
    static void unpack_##BW(const uint8_t *in, uint32_t *out, int64_t groups) {            \
        for (int64_t g = 0; g < groups; g++, in += BW, out += 8) {                          \
            for (int i = 0; i < 8; i++) {                                                   \
                uint64_t word;                                                              \
                memcpy(&word, in + (i * BW) / 8, 8);                                        \
                out[i] = (uint32_t)((word >> ((i * BW) % 8)) & (((uint64_t)1 << BW) - 1)); \
            }                                                                               \
        }                                                                                   \
    }
#define UNPACK_SLACK 40
DEFINE_UNPACK(1) DEFINE_UNPACK(2) DEFINE_UNPACK(3) DEFINE_UNPACK(4) DEFINE_UNPACK(5) DEFINE_UNPACK(6)
DEFINE_UNPACK(7) DEFINE_UNPACK(8) DEFINE_UNPACK(9) DEFINE_UNPACK(10) DEFINE_UNPACK(11) DEFINE_UNPACK(12)
DEFINE_UNPACK(13) DEFINE_UNPACK(14) DEFINE_UNPACK(15) DEFINE_UNPACK(16) DEFINE_UNPACK(17) DEFINE_UNPACK(18)
DEFINE_UNPACK(19) DEFINE_UNPACK(20) DEFINE_UNPACK(21) DEFINE_UNPACK(22) DEFINE_UNPACK(23) DEFINE_UNPACK(24)
DEFINE_UNPACK(25) DEFINE_UNPACK(26) DEFINE_UNPACK(27) DEFINE_UNPACK(28) DEFINE_UNPACK(29) DEFINE_UNPACK(30)
DEFINE_UNPACK(31) DEFINE_UNPACK(32)

typedef void (*Unpack)(const uint8_t *, uint32_t *, int64_t);
static const Unpack unpack_groups[33] = {
    NULL, unpack_1, unpack_2, unpack_3, unpack_4, unpack_5, unpack_6, unpack_7, unpack_8, unpack_9, unpack_10,
    unpack_11, unpack_12, unpack_13, unpack_14, unpack_15, unpack_16, unpack_17, unpack_18, unpack_19, unpack_20,
    unpack_21, unpack_22, unpack_23, unpack_24, unpack_25, unpack_26, unpack_27, unpack_28, unpack_29, unpack_30,
    unpack_31, unpack_32,
};

static inline int read_run_header(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 35; shift += 7) { /* a 32-bit ULEB128 */
        if (*p >= end) return -1;
        uint8_t byte = *(*p)++;
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

/* Decodes `count` values of bit_width (0..32) bits from the hybrid runs in [p, end). */
static int decode_hybrid(const uint8_t *p, const uint8_t *end, int bit_width, uint32_t *out, int64_t count,
                         Error *error) {
    const uint64_t max_value = ((uint64_t)1 << bit_width) - 1;
    const int value_bytes = (bit_width + 7) / 8;
    while (count > 0) {
        uint64_t header;
        if (read_run_header(&p, end, &header) < 0) return fail(error, "parquet: truncated RLE/bit-packed data");
        int64_t available = end - p;
        if (header & 1) { /* bit-packed: header >> 1 groups of 8 values */
            uint64_t groups = header >> 1;
            int64_t values = groups >= (uint64_t)(count + 7) / 8 ? count : (int64_t)groups * 8;
            if ((values * bit_width + 7) / 8 > available) return fail(error, "parquet: truncated bit-packed run");
            int64_t used_groups = (values + 7) / 8, fast = 0;
            if (bit_width == 0) {
                memset(out, 0, (size_t)values * sizeof *out);
            } else {
                /* whole groups with 40 bytes readable go straight to out; the rest via a padded copy */
                if (available >= UNPACK_SLACK) fast = (available - UNPACK_SLACK) / bit_width + 1;
                if (fast > values / 8) fast = values / 8;
                unpack_groups[bit_width](p, out, fast);
                for (int64_t g = fast; g < used_groups; g++) {
                    uint8_t padded[UNPACK_SLACK] = {0};
                    uint32_t group[8];
                    int64_t offset = g * bit_width, n = available - offset;
                    memcpy(padded, p + offset, (size_t)(n < bit_width ? n : bit_width));
                    unpack_groups[bit_width](padded, group, 1);
                    int64_t take = values - g * 8 < 8 ? values - g * 8 : 8;
                    memcpy(out + g * 8, group, (size_t)take * sizeof *group);
                }
            }
            out += values;
            count -= values;
            if (bit_width == 0 || groups <= (uint64_t)available / (uint64_t)bit_width) p += groups * bit_width;
            else p = end; /* a final run may be cut short: its values are all taken */
        } else { /* RLE: one value repeated header >> 1 times */
            uint64_t run = header >> 1;
            if (available < value_bytes) return fail(error, "parquet: truncated RLE run");
            uint64_t value = 0;
            for (int b = 0; b < value_bytes; b++) value |= (uint64_t)p[b] << (8 * b);
            p += value_bytes;
            if (value > max_value) return fail(error, "parquet: RLE value wider than its bit width");
            int64_t n = run < (uint64_t)count ? (int64_t)run : count;
            for (int64_t i = 0; i < n; i++) out[i] = (uint32_t)value;
            out += n;
            count -= n;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Column chunk                                                                                   */
/* ---------------------------------------------------------------------------------------------- */

typedef struct {
    int32_t type, uncompressed_size, compressed_size;
    int32_t num_values, encoding, definition_encoding;
    int32_t definition_length, repetition_length;
    int is_compressed;
    int seen; /* bits below */
} PageHeader;
enum {
    H_TYPE = 1, H_UNCOMPRESSED = 2, H_COMPRESSED = 4, H_NUM_VALUES = 8, H_ENCODING = 16, H_DEF_ENCODING = 32,
    H_DEF_LENGTH = 64, H_REP_LENGTH = 128, H_DATA = 256, H_DICTIONARY = 512, H_DATA_V2 = 1024,
};

/* DataPageHeader, DictionaryPageHeader and DataPageHeaderV2 share field 1 (num_values); the rest by kind. */
static int read_page_subheader(Thrift *t, PageHeader *h, int kind) {
    int64_t last_id = 0, id;
    int type;
    for (;;) {
        if (read_field(t, &last_id, &id, &type) < 0) return -1;
        if (type == TT_STOP) return 0;
        int rc = 0;
        if (id == 1) {
            rc = read_i32(t, type, &h->num_values);
            h->seen |= H_NUM_VALUES;
        } else if ((id == 2 && kind != H_DATA_V2) || (id == 4 && kind == H_DATA_V2)) {
            rc = read_i32(t, type, &h->encoding);
            h->seen |= H_ENCODING;
        } else if (id == 3 && kind == H_DATA) {
            rc = read_i32(t, type, &h->definition_encoding);
            h->seen |= H_DEF_ENCODING;
        } else if (id == 5 && kind == H_DATA_V2) {
            rc = read_i32(t, type, &h->definition_length);
            h->seen |= H_DEF_LENGTH;
        } else if (id == 6 && kind == H_DATA_V2) {
            rc = read_i32(t, type, &h->repetition_length);
            h->seen |= H_REP_LENGTH;
        } else if (id == 7 && kind == H_DATA_V2 && (type == TT_TRUE || type == TT_FALSE)) {
            h->is_compressed = type == TT_TRUE;
        } else {
            rc = skip_value(t, type, 0, 2);
        }
        if (rc < 0) return -1;
    }
}

static int read_page_header(Thrift *t, PageHeader *h) {
    int64_t last_id = 0, id;
    int type;
    memset(h, 0, sizeof *h);
    h->is_compressed = 1;
    for (;;) {
        if (read_field(t, &last_id, &id, &type) < 0) return -1;
        if (type == TT_STOP) break;
        int rc;
        switch (id) {
        case 1: rc = read_i32(t, type, &h->type); h->seen |= H_TYPE; break;
        case 2: rc = read_i32(t, type, &h->uncompressed_size); h->seen |= H_UNCOMPRESSED; break;
        case 3: rc = read_i32(t, type, &h->compressed_size); h->seen |= H_COMPRESSED; break;
        case 5:
        case 7:
        case 8: {
            int kind = id == 5 ? H_DATA : id == 7 ? H_DICTIONARY : H_DATA_V2;
            if (type != TT_STRUCT || (h->seen & (H_DATA | H_DICTIONARY | H_DATA_V2))) return truncated(t);
            h->seen |= kind;
            rc = read_page_subheader(t, h, kind);
            break;
        }
        default: rc = skip_value(t, type, 0, 1);
        }
        if (rc < 0) return -1;
    }
    int required = H_TYPE | H_UNCOMPRESSED | H_COMPRESSED;
    if ((h->seen & required) != required || h->uncompressed_size < 0 || h->compressed_size < 0)
        return fail(t->error, "parquet: page header lacks its type or sizes");
    if (h->type == PAGE_DATA) required = H_DATA | H_NUM_VALUES | H_ENCODING;
    else if (h->type == PAGE_DICTIONARY) required = H_DICTIONARY | H_NUM_VALUES | H_ENCODING;
    else if (h->type == PAGE_DATA_V2) required = H_DATA_V2 | H_NUM_VALUES | H_ENCODING | H_DEF_LENGTH | H_REP_LENGTH;
    else return 0;
    if ((h->seen & required) != required || h->num_values < 0 || h->definition_length < 0 || h->repetition_length < 0)
        return fail(t->error, "parquet: page header lacks a required field");
    return 0;
}

/* The decoding of one chunk. The outputs are bytearrays, grown with the GIL held before each page is
 * decoded without it; the raw pointers are taken again after each growth. */
typedef struct {
    int physical_type, max_definition_level;
    int64_t rows;
    PyObject *values, *offsets, *indices;
    int64_t entries;      /* decoded entries (dictionary ones first) */
    int64_t value_bytes;  /* BYTE_ARRAY: bytes of the entries */
    int64_t dictionary_size; /* -1: no dictionary page */
    int64_t row;          /* rows decoded */
    uint8_t *levels;      /* definition levels of a page with nulls, a byte each */
    int64_t levels_capacity;
    Error error;
} Chunk;

/* Grows a bytearray to at least `need` bytes (doubling, but not beyond `limit`). */
static int ensure_bytes(PyObject *array, int64_t need, int64_t limit) {
    int64_t size = PyByteArray_GET_SIZE(array);
    if (need <= size) return 0;
    int64_t grown = size * 2 > need ? size * 2 : need;
    if (grown > limit && limit >= need) grown = limit;
    return PyByteArray_Resize(array, (Py_ssize_t)grown);
}

/* Room for `entries` more entries of `bytes` bytes in total (BYTE_ARRAY: 16 bytes of slack for short copies). */
static int ensure_entries(Chunk *c, int64_t entries, int64_t bytes) {
    if (c->entries + entries > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "parquet: more than 2**31 entries in a column chunk");
        return -1;
    }
    if (c->physical_type != T_BYTE_ARRAY) return ensure_bytes(c->values, (c->entries + entries) * 8, INT64_MAX);
    if (ensure_bytes(c->offsets, (c->entries + entries + 1) * 8, INT64_MAX) < 0) return -1;
    return ensure_bytes(c->values, c->value_bytes + bytes + 16, INT64_MAX);
}

/* Appends `count` PLAIN values from [p, end) as entries. */
static int decode_plain(Chunk *c, const uint8_t *p, const uint8_t *end, int64_t count) {
    int64_t available = end - p;
    if (c->physical_type == T_INT32) {
        if (count > available / 4) return fail(&c->error, "parquet: page has fewer values than its header says");
        int64_t *out = (int64_t *)PyByteArray_AS_STRING(c->values) + c->entries;
        for (int64_t i = 0; i < count; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            out[i] = v;
        }
    } else if (c->physical_type == T_INT64) {
        if (count > available / 8) return fail(&c->error, "parquet: page has fewer values than its header says");
        memcpy(PyByteArray_AS_STRING(c->values) + c->entries * 8, p, (size_t)count * 8);
    } else {
        /* values' room: value_bytes + available + 16, so a 16-byte copy of a short value stays inside */
        uint8_t *values = (uint8_t *)PyByteArray_AS_STRING(c->values);
        int64_t *offsets = (int64_t *)PyByteArray_AS_STRING(c->offsets) + c->entries + 1;
        int64_t used = c->value_bytes;
        for (int64_t i = 0; i < count; i++) {
            if (end - p < 4) return fail(&c->error, "parquet: page has fewer values than its header says");
            uint32_t length = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            p += 4;
            if (length > (uint64_t)(end - p)) return fail(&c->error, "parquet: byte array value past its page");
            if (length <= 16 && end - p >= 16) memcpy(values + used, p, 16);
            else memcpy(values + used, p, length);
            p += length;
            used += length;
            offsets[i] = used;
        }
        c->value_bytes = used;
    }
    c->entries += count;
    return 0;
}

#define ALL_ONES 0x0101010101010101ULL

/* Decodes `count` definition levels (bit width 1) from [p, end) into a byte each (slack: 8 bytes after
 * out[count]); returns how many are 1 (non-null), or -1. */
static int64_t decode_levels(const uint8_t *p, const uint8_t *end, uint8_t *out, int64_t count, Error *error) {
    int64_t present = 0;
    while (count > 0) {
        uint64_t header;
        if (read_run_header(&p, end, &header) < 0) return fail(error, "parquet: truncated RLE/bit-packed data");
        int64_t available = end - p;
        if (header & 1) {
            uint64_t groups = header >> 1;
            int64_t values = groups >= (uint64_t)(count + 7) / 8 ? count : (int64_t)groups * 8;
            int64_t bytes = (values + 7) / 8;
            if (bytes > available) return fail(error, "parquet: truncated bit-packed run");
            for (int64_t b = 0; b < bytes; b++) {
                /* bit i of the byte to byte i of a word: spread, keep one bit a byte, make it 0 or 1 */
                uint64_t spread = ((uint64_t)p[b] * ALL_ONES) & 0x8040201008040201ULL;
                uint64_t word = ((spread + 0x7F7F7F7F7F7F7F7FULL) >> 7) & ALL_ONES;
                memcpy(out + b * 8, &word, 8);
            }
            for (int64_t i = 0; i < values; i++) present += out[i];
            out += values;
            count -= values;
            if (groups <= (uint64_t)available) p += groups;
            else p = end;
        } else {
            uint64_t run = header >> 1;
            if (available < 1) return fail(error, "parquet: truncated RLE run");
            uint8_t value = *p++;
            if (value > 1) return fail(error, "parquet: RLE value wider than its bit width");
            int64_t n = run < (uint64_t)count ? (int64_t)run : count;
            memset(out, value, (size_t)n);
            present += value ? n : 0;
            out += n;
            count -= n;
        }
    }
    return present;
}

/* indices of a PLAIN page with nulls: the next entry number (first, first + 1, ...) for each 1 level, -1 for
 * each 0. Eight rows at a time, as nulls are mostly rare or mostly everywhere. */
static void number_entries(int32_t *slot, const uint8_t *levels, int64_t rows, int32_t first) {
    int64_t i = 0;
    int32_t next = first;
    for (; i + 8 <= rows; i += 8) {
        uint64_t word;
        memcpy(&word, levels + i, 8);
        if (word == ALL_ONES) {
            for (int j = 0; j < 8; j++) slot[i + j] = next + j;
            next += 8;
        } else {
            for (int j = 0; j < 8; j++) {
                int level = levels[i + j];
                slot[i + j] = level ? next : -1;
                next += level;
            }
        }
    }
    for (; i < rows; i++) {
        int level = levels[i];
        slot[i] = level ? next : -1;
        next += level;
    }
}

/* indices of a dictionary page with nulls, in place: slot[0 .. present) holds the indices of the non-null
 * rows; they move to their rows, from the last. Row i's index is at k <= i, so it is read before its
 * place is written. Eight rows at a time where they align (rows % 8 single ones at the end first). */
static void spread_in_place(int32_t *slot, const uint8_t *levels, int64_t rows, int64_t present) {
    int64_t i = rows, k = present;
    while (i > rows - rows % 8) {
        i--;
        int level = levels[i];
        k -= level;
        slot[i] = level ? slot[k] : -1;
    }
    for (; i >= 8; i -= 8) {
        uint64_t word;
        memcpy(&word, levels + i - 8, 8);
        if (word == ALL_ONES) {
            k -= 8;
            memmove(slot + i - 8, slot + k, 8 * sizeof *slot);
        } else if (word == 0) {
            for (int j = 0; j < 8; j++) slot[i - 8 + j] = -1;
        } else {
            for (int j = 7; j >= 0; j--) {
                int level = levels[i - 8 + j];
                k -= level;
                slot[i - 8 + j] = level ? slot[k] : -1;
            }
        }
    }
}

/* Grows a malloc'd array to `count` elements of `size` bytes; callable without the GIL. */
static int ensure_scratch(void **array, int64_t *capacity, int64_t count, size_t size, Error *error) {
    if (*capacity >= count) return 0;
    free(*array);
    *array = malloc((size_t)count * size);
    *capacity = *array ? count : 0;
    return *array ? 0 : fail(error, "parquet: out of memory");
}

/* Decodes a data page's definition levels and values into indices[row .. row + rows). GIL released. */
static int decode_data_page(Chunk *c, const uint8_t *levels, const uint8_t *levels_end, const uint8_t *values,
                            const uint8_t *values_end, int encoding, int64_t rows) {
    int32_t *slot = (int32_t *)PyByteArray_AS_STRING(c->indices) + c->row;
    int64_t present = rows;
    int has_nulls = 0;
    if (c->max_definition_level > 0 && rows > 0) {
        /* common case first: one RLE run of the max level covers the page */
        const uint8_t *q = levels;
        uint64_t header;
        if (read_run_header(&q, levels_end, &header) < 0 || (header & 1) || (header >> 1) < (uint64_t)rows ||
            q >= levels_end || *q != 1) {
            if (ensure_scratch((void **)&c->levels, &c->levels_capacity, rows + 8, 1, &c->error) < 0) return -1;
            present = decode_levels(levels, levels_end, c->levels, rows, &c->error);
            if (present < 0) return -1;
            has_nulls = present < rows;
        }
    }
    if (encoding == E_PLAIN) {
        int32_t first = (int32_t)c->entries;
        if (decode_plain(c, values, values_end, present) < 0) return -1;
        if (has_nulls) number_entries(slot, c->levels, rows, first);
        else
            for (int64_t i = 0; i < rows; i++) slot[i] = first + (int32_t)i;
        return 0;
    }
    /* dictionary indices: a bit width byte, then hybrid runs; with nulls, packed first, then spread */
    uint32_t *target = (uint32_t *)slot;
    if (present > 0) {
        if (values >= values_end) return fail(&c->error, "parquet: dictionary page data without a bit width");
        int bit_width = *values++;
        if (bit_width > 32) return fail(&c->error, "parquet: dictionary index bit width %d", bit_width);
        if (decode_hybrid(values, values_end, bit_width, target, present, &c->error) < 0) return -1;
        uint32_t bad = 0, size = (uint32_t)c->dictionary_size;
        for (int64_t i = 0; i < present; i++) bad |= target[i] >= size;
        if (bad) return fail(&c->error, "parquet: dictionary index out of range");
    }
    if (has_nulls) spread_in_place(slot, c->levels, rows, present);
    return 0;
}

/* The page body after decompression: the raw bytes, or the decompress callable's result (held in *view). */
static int page_payload(PyObject *decompress, PyObject *file_view, const uint8_t *file, const uint8_t *raw,
                        int64_t raw_length, int64_t uncompressed_length, Py_buffer *view, int *held,
                        const uint8_t **payload) {
    if (decompress == Py_None) {
        if (raw_length != uncompressed_length) {
            PyErr_SetString(PyExc_ValueError, "parquet: compressed page but no decompress callable");
            return -1;
        }
        *payload = raw;
        return 0;
    }
    Py_ssize_t offset = (Py_ssize_t)(raw - file);
    PyObject *slice = PySequence_GetSlice(file_view, offset, offset + (Py_ssize_t)raw_length);
    if (!slice) return -1;
    PyObject *result = PyObject_CallFunction(decompress, "On", slice, (Py_ssize_t)uncompressed_length);
    Py_DECREF(slice);
    if (!result) return -1;
    int rc = PyObject_GetBuffer(result, view, PyBUF_SIMPLE);
    Py_DECREF(result);
    if (rc < 0) return -1;
    *held = 1;
    if (view->len != uncompressed_length) {
        PyErr_Format(PyExc_ValueError, "parquet: decompressed page has %zd bytes, its header says %lld", view->len,
                     (long long)uncompressed_length);
        return -1;
    }
    *payload = view->buf;
    return 0;
}

static int value_error(Chunk *c) {
    PyErr_SetString(PyExc_ValueError, c->error.message);
    return -1;
}

/* Decodes one page (header at *position) and moves *position past it. */
static int decode_page(Chunk *c, PyObject *decompress, PyObject *file_view, const uint8_t *file, const uint8_t **position,
                       const uint8_t *chunk_end) {
    PageHeader h;
    Thrift t = {.p = *position, .end = chunk_end, .error = &c->error};
    if (read_page_header(&t, &h) < 0) return value_error(c);
    const uint8_t *body = t.p;
    if (h.compressed_size > chunk_end - body) {
        PyErr_SetString(PyExc_ValueError, "parquet: page extends past its column chunk");
        return -1;
    }
    *position = body + h.compressed_size;
    if (h.type == PAGE_INDEX) return 0;
    if (h.type != PAGE_DATA && h.type != PAGE_DICTIONARY && h.type != PAGE_DATA_V2) {
        PyErr_Format(PyExc_ValueError, "parquet: unsupported page type %d in column chunk", (int)h.type);
        return -1;
    }
    Py_buffer view;
    int held = 0, rc = -1;
    const uint8_t *payload;
    if (h.type == PAGE_DICTIONARY) {
        if (c->dictionary_size >= 0 || c->row > 0 || c->entries > 0) {
            PyErr_SetString(PyExc_ValueError, "parquet: dictionary page not first in its column chunk");
            return -1;
        }
        if (h.encoding != E_PLAIN && h.encoding != E_PLAIN_DICTIONARY) {
            PyErr_Format(PyExc_ValueError, "parquet: unsupported dictionary encoding %d in column chunk", (int)h.encoding);
            return -1;
        }
        if (page_payload(decompress, file_view, file, body, h.compressed_size, h.uncompressed_size, &view, &held,
                         &payload) < 0)
            goto done;
        int64_t width = c->physical_type == T_INT64 ? 8 : 4; /* BYTE_ARRAY: a 4-byte length at least */
        if (h.num_values > h.uncompressed_size / width) {
            PyErr_SetString(PyExc_ValueError, "parquet: dictionary page has fewer values than its header says");
            goto done;
        }
        if (ensure_entries(c, h.num_values, h.uncompressed_size) < 0) goto done;
        Py_BEGIN_ALLOW_THREADS
        rc = decode_plain(c, payload, payload + h.uncompressed_size, h.num_values);
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            value_error(c);
            goto done;
        }
        c->dictionary_size = h.num_values;
        goto done;
    }
    /* a data page */
    int64_t rows = h.num_values;
    if (rows > c->rows - c->row) {
        PyErr_SetString(PyExc_ValueError, "parquet: column chunk has more values than rows");
        return -1;
    }
    if (h.encoding != E_PLAIN && h.encoding != E_PLAIN_DICTIONARY && h.encoding != E_RLE_DICTIONARY) {
        PyErr_Format(PyExc_ValueError, "parquet: unsupported encoding %d in column chunk", (int)h.encoding);
        return -1;
    }
    if (h.encoding != E_PLAIN && c->dictionary_size < 0) {
        PyErr_SetString(PyExc_ValueError, "parquet: dictionary-encoded page without a dictionary page");
        return -1;
    }
    const uint8_t *levels = NULL, *levels_end = NULL, *values, *values_end;
    if (h.type == PAGE_DATA) {
        if (c->max_definition_level > 0 && (!(h.seen & H_DEF_ENCODING) || h.definition_encoding != E_RLE)) {
            PyErr_Format(PyExc_ValueError, "parquet: unsupported definition level encoding %d in column chunk",
                         (int)h.definition_encoding);
            return -1;
        }
        if (page_payload(decompress, file_view, file, body, h.compressed_size, h.uncompressed_size, &view, &held,
                         &payload) < 0)
            goto done;
        values = payload;
        values_end = payload + h.uncompressed_size;
        if (c->max_definition_level > 0) {
            if (values_end - values < 4) {
                PyErr_SetString(PyExc_ValueError, "parquet: truncated definition levels");
                goto done;
            }
            uint32_t length = (uint32_t)values[0] | (uint32_t)values[1] << 8 | (uint32_t)values[2] << 16 |
                              (uint32_t)values[3] << 24;
            values += 4;
            if (length > (uint64_t)(values_end - values)) {
                PyErr_SetString(PyExc_ValueError, "parquet: truncated definition levels");
                goto done;
            }
            levels = values;
            levels_end = values += length;
        }
    } else {
        if (h.repetition_length != 0) {
            PyErr_SetString(PyExc_ValueError, "parquet: repetition levels in a flat column chunk");
            return -1;
        }
        int64_t level_bytes = h.definition_length;
        if (level_bytes > h.compressed_size || level_bytes > h.uncompressed_size) {
            PyErr_SetString(PyExc_ValueError, "parquet: definition levels longer than their page");
            return -1;
        }
        levels = body;
        levels_end = body + level_bytes;
        if (h.is_compressed) {
            if (page_payload(decompress, file_view, file, body + level_bytes, h.compressed_size - level_bytes,
                             h.uncompressed_size - level_bytes, &view, &held, &payload) < 0)
                goto done;
        } else if (h.compressed_size != h.uncompressed_size) {
            PyErr_SetString(PyExc_ValueError, "parquet: uncompressed page with two different sizes");
            return -1;
        } else {
            payload = body + level_bytes;
        }
        values = payload;
        values_end = payload + (h.uncompressed_size - level_bytes);
    }
    /* room for the page's rows and, if PLAIN, its entries (at most one per 4 or 8 bytes of values) */
    if (ensure_bytes(c->indices, (c->row + rows) * 4, c->rows * 4) < 0) goto done;
    if (h.encoding == E_PLAIN) {
        int64_t most = (values_end - values) / (c->physical_type == T_INT64 ? 8 : 4);
        if (ensure_entries(c, most < rows ? most : rows, values_end - values) < 0) goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = decode_data_page(c, levels, levels_end, values, values_end, h.encoding, rows);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        value_error(c);
        goto done;
    }
    c->row += rows;
done:
    if (held) PyBuffer_Release(&view);
    return rc;
}

static PyObject *decode_chunk(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *keywords[] = {"data", "start", "size", "physical_type", "max_definition_level", "rows", "decompress",
                               NULL};
    PyObject *data, *decompress;
    Py_ssize_t start, size, rows;
    int physical_type, max_definition_level;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OnniinO:decode_chunk", keywords, &data, &start, &size,
                                     &physical_type, &max_definition_level, &rows, &decompress))
        return NULL;
    if (physical_type != T_INT32 && physical_type != T_INT64 && physical_type != T_BYTE_ARRAY)
        return PyErr_Format(PyExc_ValueError, "parquet: unsupported physical type %d", physical_type);
    if (max_definition_level != 0 && max_definition_level != 1)
        return PyErr_Format(PyExc_ValueError, "parquet: unsupported max definition level %d", max_definition_level);
    if (rows < 0 || rows > INT32_MAX) return PyErr_Format(PyExc_ValueError, "parquet: bad row count %zd", rows);
    if (decompress != Py_None && !PyCallable_Check(decompress))
        return PyErr_Format(PyExc_TypeError, "decompress must be callable or None");
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = NULL, *file_view = NULL;
    Chunk c = {.physical_type = physical_type, .max_definition_level = max_definition_level, .rows = rows,
               .dictionary_size = -1};
    if (start < 0 || size < 0 || start > view.len || size > view.len - start) {
        PyErr_SetString(PyExc_ValueError, "parquet: column chunk outside the file");
        goto done;
    }
    if (decompress != Py_None) { /* slices of it are what the callable gets */
        PyObject *whole = PyMemoryView_FromObject(data);
        if (!whole) goto done;
        file_view = PyObject_CallMethod(whole, "cast", "s", "B");
        Py_DECREF(whole);
        if (!file_view) goto done;
    }
    c.values = PyByteArray_FromStringAndSize(NULL, 0);
    c.indices = PyByteArray_FromStringAndSize(NULL, 0);
    if (physical_type == T_BYTE_ARRAY) c.offsets = PyByteArray_FromStringAndSize("\0\0\0\0\0\0\0\0", 8);
    if (!c.values || !c.indices || (physical_type == T_BYTE_ARRAY && !c.offsets)) goto done;
    const uint8_t *file = view.buf, *position = file + start, *chunk_end = file + start + size;
    while (position < chunk_end)
        if (decode_page(&c, decompress, file_view, file, &position, chunk_end) < 0) goto done;
    if (c.row != rows) {
        PyErr_Format(PyExc_ValueError, "parquet: column chunk has %lld values for %zd rows", (long long)c.row, rows);
        goto done;
    }
    int64_t value_bytes = physical_type == T_BYTE_ARRAY ? c.value_bytes : c.entries * 8;
    if (PyByteArray_Resize(c.values, (Py_ssize_t)value_bytes) < 0 || PyByteArray_Resize(c.indices, rows * 4) < 0 ||
        (c.offsets && PyByteArray_Resize(c.offsets, (Py_ssize_t)(c.entries + 1) * 8) < 0))
        goto done;
    result = PyTuple_Pack(3, c.values, c.offsets ? c.offsets : Py_None, c.indices);
done:
    Py_XDECREF(c.values);
    Py_XDECREF(c.offsets);
    Py_XDECREF(c.indices);
    Py_XDECREF(file_view);
    free(c.levels);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"read_footer", (PyCFunction)(void (*)(void))read_footer, METH_VARARGS | METH_KEYWORDS,
     "read_footer(data) -> (num_rows, columns, row_groups) of a whole Parquet file."},
    {"decode_chunk", (PyCFunction)(void (*)(void))decode_chunk, METH_VARARGS | METH_KEYWORDS,
     "decode_chunk(data, start, size, physical_type, max_definition_level, rows, decompress)"
     " -> (values, offsets, indices) of one flat column chunk."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_parquet",
    .m_doc = "A Parquet footer parser and flat column chunk decoder.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__parquet(void) { return PyModule_Create(&module); }

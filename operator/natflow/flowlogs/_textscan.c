/*
 * natflow.flowlogs._textscan: S3 text flow-log lines -> the reduction, in one pass of compiled code.
 *
 * The rules are those of readers.add_parts and reduce.Reduction.add (the reference, in Python).
 * This code applies them only to lines it can read with certainty: printable-ASCII tokens, the
 * format's number of fields, plain digits of at most 18 characters, dotted-quad IPv4 addresses in
 * the form Python's ipaddress accepts. Any other line is handed back (its line number and place)
 * for the reference code to add, so that a record is never decided differently from the reference.
 * A sum that would overflow 64 bits hands its line back as well: Python's integers take it. So does
 * a record outside the bounds of natflow.flowlogs.plausible (packets, bytes, start and end) and a line
 * longer than any record: the reference counts them as malformed, with their file and line.
 *
 * Regional NAT Gateways: a record whose resource-id is a regional gateway's id is that gateway's,
 * whatever its interface-id, and is classified by which of its ends are inside the VPC (see
 * reduce.regional_leg); unclassified records are also counted per reduced-row key, for the warning
 * that names the gateway.
 *
 * One TextScanner reads one file (the caller merges files). `scan` releases the GIL while it works.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_FIELDS 64
#define MAX_DIGITS 18 /* below 2**63: sums of two never wrap before the overflow test */
#define MAX_SECONDS 99999999999LL /* timeutil.MAX_SECONDS: larger start/end values are milliseconds */

enum { TOKEN = 0, SEPARATOR = 1, NEWLINE = 2, OTHER = 3 };
static unsigned char byte_class[256];

/* Field slots of the layout, in this order; -1 = absent (reads as "-"). */
enum {
    F_ENI, F_SRC, F_DST, F_PKT_SRC, F_PKT_DST, F_SRC_SERVICE, F_DST_SERVICE,
    F_PACKETS, F_BYTES, F_START, F_END, F_ACTION, F_STATUS, F_RESOURCE, F_COUNT
};

/* Counters, named as ReductionStats' fields. */
enum {
    S_RECORDS_READ, S_RECORDS_COUNTED, S_NO_DATA, S_SKIP_DATA, S_OTHER_INTERFACE, S_OUTSIDE_WINDOW,
    S_REJECTED, S_REJECTED_BYTES, S_INTERNET, S_INTERNET_BYTES, S_UNCLASSIFIED, S_UNCLASSIFIED_BYTES, S_COUNT
};
static const char *stat_names[S_COUNT] = {
    "records_read", "records_counted", "no_data_records", "skip_data_records", "other_interface_records",
    "outside_window_records", "rejected_records", "rejected_bytes", "internet_leg_records", "internet_leg_bytes",
    "unclassified_nat_records", "unclassified_nat_bytes",
};

/* One cache line: the rows of a file are touched at random, and their misses cost most of a counted line. */
typedef struct {
    int64_t minute, last;
    uint64_t bytes, packets;
    uint32_t records, hash; /* hash: the low half, where the slot comes from */
    uint32_t eni, address;
    uint32_t peer_at, service_at; /* in the arena */
    uint16_t peer_len, service_len;
    uint8_t direction, first_second; /* the first start is minute * 60 + first_second */
} Row;
_Static_assert(sizeof(Row) == 64, "a row is one cache line");

typedef struct {
    const char *text;
    Py_ssize_t length;
} Token;

typedef struct {
    uint32_t address;
    int32_t eni; /* -1: the NAT IP's ENI is unknown (empty) */
} NatAddress;

typedef struct {
    PyObject_HEAD
    int width;
    int field[F_COUNT];
    PyObject *kept; /* (eni_names, nat_enis, regional): the keys rows are keyed by, the bytes the tokens point into */
    Token *nat_enis;         /* interface-id tokens of NAT Gateway ENIs */
    int32_t *nat_eni_index;  /* their index in eni_names */
    uint64_t *nat_eni_key;   /* their token_key */
    Py_ssize_t nat_eni_count;
    Token *regional;         /* resource-id tokens of regional NAT Gateways (their rows are keyed by the id) */
    int32_t *regional_index; /* their index in eni_names */
    uint64_t *regional_key;
    Py_ssize_t regional_count;
    uint64_t *unclassified;  /* per eni_names index: unclassified records, their bytes */
    Py_ssize_t name_count;
    NatAddress *nat_addresses; /* sorted by address */
    Py_ssize_t nat_address_count;
    uint32_t *inside_first, *inside_last; /* IPv4 ranges inside the VPC */
    Py_ssize_t inside_count;
    int has_window;
    int64_t window_start, window_end;
    int has_fallback;
    int64_t fallback_start, fallback_end;
    /* plausible.py's bounds (given by textscan.scanner_for) and fields.MAX_LINE_BYTES */
    uint64_t max_packets, max_bytes;
    int64_t earliest, latest;
    Py_ssize_t max_line;
    uint64_t stats[S_COUNT];
    int has_times;
    int64_t first_time, last_time;
    Row *rows;          /* dense, in the order they were made: the recent ones stay in the caches */
    size_t row_capacity, row_count;
    uint64_t *slots;    /* open-addressing index: row number + 1, and the hash's high half above; 0 free */
    size_t slot_count;  /* a power of two, at least twice row_count */
    char *arena;
    size_t arena_size, arena_capacity;
    int failed; /* out of memory during a scan */
    int initialised;
} Scanner;

/* What one scan hands back to the reference: (line number, start, end) triples of lines, or row positions. */
typedef struct {
    Py_ssize_t *items;
    size_t count, capacity;
} Handback;

static int handback_add(Handback *h, const Py_ssize_t *items, size_t count) {
    if (h->count + count > h->capacity) {
        size_t capacity = h->capacity ? h->capacity * 2 : 48;
        Py_ssize_t *grown = realloc(h->items, capacity * sizeof(Py_ssize_t));
        if (!grown) return -1;
        h->items = grown;
        h->capacity = capacity;
    }
    memcpy(h->items + h->count, items, count * sizeof(Py_ssize_t));
    h->count += count;
    return 0;
}

/* -- field readers ------------------------------------------------------------------------------ */

static inline int is_dash(Token t) { return t.length == 1 && t.text[0] == '-'; }

/* memcmp(a, b, n) == 0 for the short texts compared here, without a call into libc. */
static inline int same_bytes(const char *a, const char *b, Py_ssize_t n) {
    for (; n >= 8; a += 8, b += 8, n -= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return 0;
    }
    for (; n > 0; n--)
        if (*a++ != *b++) return 0;
    return 1;
}

static inline int token_is(Token t, const char *word, Py_ssize_t length) {
    return t.length == length && memcmp(t.text, word, (size_t)length) == 0;
}

/* readers._number: digits -> value (1), "-" -> 0 (1); anything else 0 (not a number). Digits
 * longer than MAX_DIGITS -> -1: the reference reads them. */
static inline int read_number(Token t, uint64_t *value) {
    if (is_dash(t)) {
        *value = 0;
        return 1;
    }
    if (t.length > MAX_DIGITS) {
        for (Py_ssize_t i = 0; i < t.length; i++)
            if ((unsigned char)(t.text[i] - '0') > 9) return 0;
        return -1;
    }
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < t.length; i++) {
        unsigned d = (unsigned char)(t.text[i] - '0');
        if (d > 9) return 0;
        v = v * 10 + d;
    }
    *value = v;
    return 1;
}

static inline int64_t flow_seconds(uint64_t value) {
    return value > (uint64_t)MAX_SECONDS ? (int64_t)(value / 1000) : (int64_t)value;
}

/* Dotted-quad IPv4 as ipaddress.IPv4Address accepts it (no leading zeros, octets <= 255). */
static inline int read_ipv4(Token t, uint32_t *address) {
    const char *p = t.text, *end = t.text + t.length;
    uint32_t result = 0;
    for (int octet = 0; octet < 4; octet++) {
        const char *begin = p;
        unsigned value = 0;
        while (p < end && (unsigned char)(*p - '0') <= 9 && p - begin < 3) value = value * 10 + (unsigned)(*p++ - '0');
        Py_ssize_t digits = p - begin;
        if (digits == 0 || value > 255 || (digits > 1 && *begin == '0')) return 0;
        if (p < end && (unsigned char)(*p - '0') <= 9) return 0; /* a fourth digit */
        result = (result << 8) | value;
        if (octet < 3) {
            if (p >= end || *p != '.') return 0;
            p++;
        }
    }
    if (p != end) return 0;
    *address = result;
    return 1;
}

static int nat_address_find(const Scanner *s, uint32_t address) {
    Py_ssize_t low = 0, high = s->nat_address_count;
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (s->nat_addresses[middle].address < address)
            low = middle + 1;
        else
            high = middle;
    }
    return low < s->nat_address_count && s->nat_addresses[low].address == address ? (int)low : -1;
}

static inline int inside(const Scanner *s, uint32_t address) {
    for (Py_ssize_t i = 0; i < s->inside_count; i++)
        if (address >= s->inside_first[i] && address <= s->inside_last[i]) return 1;
    return 0;
}

/* A token's last 8 bytes (all of it when shorter), to tell ENI ids apart before comparing them whole. */
static inline uint64_t token_key(Token t) {
    uint64_t key = 0;
    if (t.length >= 8)
        memcpy(&key, t.text + t.length - 8, 8);
    else
        memcpy(&key, t.text, (size_t)t.length);
    return key ^ (uint64_t)t.length;
}

/* The eni_names index of token `t` among `count` known tokens, or -1. */
static inline int32_t known_token(const Token *tokens, const uint64_t *keys, const int32_t *index, Py_ssize_t count,
                                  Token t) {
    uint64_t key = token_key(t);
    for (Py_ssize_t i = 0; i < count; i++)
        if (key == keys[i] && t.length == tokens[i].length && same_bytes(t.text, tokens[i].text, t.length))
            return index[i];
    return -1;
}

static inline int32_t nat_eni_of(const Scanner *s, Token t) {
    return known_token(s->nat_enis, s->nat_eni_key, s->nat_eni_index, s->nat_eni_count, t);
}

/* -- the reduced rows ---------------------------------------------------------------------------- */

static inline uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    return h * 0xC2B2AE3D27D4EB4FULL;
}

static uint64_t text_hash(uint64_t h, Token t) {
    for (Py_ssize_t i = 0; i < t.length; i++) h = (h ^ (unsigned char)t.text[i]) * 0x100000001B3ULL;
    return mix(h, (uint64_t)t.length);
}

static int arena_put(Scanner *s, Token t, uint32_t *at) {
    *at = 0;
    if (!t.length) return 0;
    if (s->arena_size + (size_t)t.length > s->arena_capacity) {
        size_t capacity = s->arena_capacity ? s->arena_capacity : 1 << 16;
        while (capacity < s->arena_size + (size_t)t.length) capacity *= 2;
        if (capacity > UINT32_MAX) return -1;
        char *arena = realloc(s->arena, capacity);
        if (!arena) return -1;
        s->arena = arena;
        s->arena_capacity = capacity;
    }
    memcpy(s->arena + s->arena_size, t.text, (size_t)t.length);
    *at = (uint32_t)s->arena_size;
    s->arena_size += (size_t)t.length;
    return 0;
}

static int rows_grow(Scanner *s) {
    if (s->row_count == s->row_capacity) {
        size_t capacity = s->row_capacity ? s->row_capacity * 2 : 1 << 10; /* slot_count stays below 2**32 */
        Row *rows = realloc(s->rows, capacity * sizeof(Row));
        if (!rows || capacity > UINT32_MAX - 1) {
            free(rows == s->rows ? NULL : rows);
            return -1;
        }
        s->rows = rows;
        s->row_capacity = capacity;
    }
    if ((s->row_count + 1) * 2 > s->slot_count) {
        size_t count = s->slot_count ? s->slot_count * 2 : 1 << 11;
        uint64_t *slots = calloc(count, sizeof(uint64_t));
        if (!slots) return -1;
        for (size_t i = 0; i < s->slot_count; i++) {
            if (!s->slots[i]) continue;
            size_t slot = s->rows[(uint32_t)s->slots[i] - 1].hash & (count - 1);
            while (slots[slot]) slot = (slot + 1) & (count - 1);
            slots[slot] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots;
        s->slot_count = count;
    }
    return 0;
}

/* A client leg as add_record classified it: its reduced row's key (and the key's hash) and what it adds. */
typedef struct {
    uint32_t eni, address;
    uint8_t direction;
    int64_t minute, start, end;
    Token peer, service;
    uint64_t bytes, packets, hash;
} Leg;

static inline uint64_t leg_hash(const Leg *leg) {
    uint64_t hash = mix(mix(mix(mix(leg->eni, leg->address), leg->direction), (uint64_t)leg->minute), 0);
    hash = text_hash(text_hash(hash, leg->peer), leg->service);
    hash ^= hash >> 33; /* products carry low bits up only: bring the high bits down for the slot */
    hash *= 0xFF51AFD7ED558CCDULL;
    return hash ^ (hash >> 33);
}

/* The row of a leg's key, created empty when new; NULL when out of memory. */
static Row *row_of(Scanner *s, const Leg *leg) {
    if (rows_grow(s) < 0) return NULL;
    uint32_t eni = leg->eni, address = leg->address;
    uint8_t direction = leg->direction;
    int64_t minute = leg->minute;
    Token peer = leg->peer, service = leg->service;
    uint64_t hash = leg->hash;
    size_t mask = s->slot_count - 1, slot = hash & mask;
    uint64_t tag = hash & 0xFFFFFFFF00000000ULL;
    for (;; slot = (slot + 1) & mask) {
        uint64_t entry = s->slots[slot];
        if (!entry) break;
        if ((entry & 0xFFFFFFFF00000000ULL) != tag) continue; /* another key: its row stays untouched */
        Row *row = &s->rows[(uint32_t)entry - 1];
        if (row->eni == eni && row->address == address && row->direction == direction && row->minute == minute &&
            row->peer_len == (uint32_t)peer.length && row->service_len == (uint32_t)service.length &&
            same_bytes(s->arena + row->peer_at, peer.text, peer.length) &&
            same_bytes(s->arena + row->service_at, service.text, service.length))
            return row;
    }
    uint32_t peer_at, service_at;
    if (arena_put(s, peer, &peer_at) < 0 || arena_put(s, service, &service_at) < 0) return NULL;
    Row *row = &s->rows[s->row_count];
    s->slots[slot] = tag | (uint32_t)(++s->row_count);
    memset(row, 0, sizeof(*row));
    row->hash = (uint32_t)hash;
    row->eni = eni;
    row->address = address;
    row->direction = direction;
    row->minute = minute;
    row->peer_at = peer_at;
    row->peer_len = (uint16_t)peer.length;
    row->service_at = service_at;
    row->service_len = (uint16_t)service.length;
    row->first_second = 59;
    row->last = INT64_MIN;
    return row;
}

/* -- one record ---------------------------------------------------------------------------------- */

enum { TAKEN = 0, HAND_BACK = 1, NO_MEMORY = -1, CLIENT_LEG = 2 };

/* Where a record's fields come from: a text line's token starts (starts[width] is one past its
 * newline), or, for Parquet columns, the F_COUNT tokens made for the row; a token without text
 * there is an integer column's value, in numbers[slot]. */
typedef struct {
    const char *const *starts;
    const Token *tokens;
    const uint64_t *numbers;
    const uint64_t *addresses; /* or NULL: per slot, an address field read once (NOT_IPV4: none) */
} Record;

#define NOT_IPV4 UINT64_MAX

/* An address field as read_ipv4 reads its token `t`, or as it was read once before. */
static inline int record_ipv4(const Record *r, int slot, Token t, uint32_t *address) {
    if (!r->addresses) return read_ipv4(t, address);
    if (r->addresses[slot] == NOT_IPV4) return 0;
    *address = (uint32_t)r->addresses[slot];
    return 1;
}

/* The token of a field: in a line, it ends before the separators (or the newline) that precede the
 * next token's start. */
static inline Token field(const Scanner *s, const Record *r, int slot) {
    static const Token dash = {"-", 1};
    if (r->tokens) return r->tokens[slot];
    int index = s->field[slot];
    if (index < 0) return dash;
    const char *end = r->starts[index + 1] - 1;
    while ((unsigned char)end[-1] <= ' ') end--; /* a run of separators, rarely */
    return (Token){r->starts[index], end - r->starts[index]};
}

/* The regional NAT Gateway (its eni_names index) of a resource-id, or -1. */
static inline int32_t regional_of_token(const Scanner *s, Token t) {
    return known_token(s->regional, s->regional_key, s->regional_index, s->regional_count, t);
}

/* A record's regional NAT Gateway by its resource-id, or -1. */
static inline int32_t regional_of(const Scanner *s, const Record *r) {
    if (!s->regional_count || s->field[F_RESOURCE] < 0) return -1;
    return regional_of_token(s, field(s, r, F_RESOURCE));
}

/* A number field's token `t` as read_number reads it, or an integer column's value (already checked). */
static inline int token_number(const Record *r, int slot, Token t, uint64_t *value) {
    if (!t.text) {
        *value = r->numbers[slot];
        return 1;
    }
    return read_number(t, value);
}

static inline int number_field(const Scanner *s, const Record *r, int slot, uint64_t *value) {
    return token_number(r, slot, field(s, r, slot), value);
}

static inline int add_to(uint64_t *total, uint64_t value) { return __builtin_add_overflow(*total, value, total); }

/* An internet-side or unclassified record of the reduced-row key `eni`, counted: TAKEN, or HAND_BACK
 * when a sum would pass 64 bits. */
static int tally_record(Scanner *s, int32_t eni, int internet, uint64_t nbytes) {
    uint64_t *stats = s->stats;
    uint64_t total = stats[internet ? S_INTERNET_BYTES : S_UNCLASSIFIED_BYTES], own = 0;
    if (add_to(&total, nbytes)) return HAND_BACK;
    if (!internet) {
        own = s->unclassified[2 * eni + 1];
        if (add_to(&own, nbytes)) return HAND_BACK;
        s->unclassified[2 * eni]++;
        s->unclassified[2 * eni + 1] = own;
    }
    stats[internet ? S_INTERNET_BYTES : S_UNCLASSIFIED_BYTES] = total;
    stats[S_RECORDS_READ]++;
    stats[internet ? S_INTERNET : S_UNCLASSIFIED]++;
    return TAKEN;
}

/* readers.add_parts + Reduction.add for a record of exactly `width` tokens, up to the reduced row:
 * CLIENT_LEG with `leg` filled for add_leg, or TAKEN (counted) or HAND_BACK. */
static int classify_record(Scanner *s, const Record *record, Leg *leg) {
    uint64_t *stats = s->stats;
    Token status = field(s, record, F_STATUS);
    int no_data = token_is(status, "NODATA", 6), skip_data = !no_data && token_is(status, "SKIPDATA", 8);
    if (no_data || skip_data) { /* readers._count_status */
        if (s->has_window) {
            Token start_text = field(s, record, F_START);
            uint64_t value;
            int has_start = 0;
            int64_t start = 0;
            if (!is_dash(start_text)) {
                int number = token_number(record, F_START, start_text, &value);
                if (number < 0) return HAND_BACK;
                if (number) {
                    start = flow_seconds(value);
                    has_start = 1;
                }
            }
            if (!has_start && s->has_fallback) {
                start = s->fallback_start;
                has_start = 1;
            }
            if (has_start && !(s->window_start <= start && start < s->window_end)) {
                stats[S_RECORDS_READ]++;
                stats[S_OUTSIDE_WINDOW]++;
                return TAKEN;
            }
        }
        stats[S_RECORDS_READ]++;
        stats[no_data ? S_NO_DATA : S_SKIP_DATA]++;
        return TAKEN;
    }
    int32_t eni = regional_of(s, record);
    int regional = eni >= 0;
    if (!regional && s->field[F_ENI] >= 0) {
        eni = nat_eni_of(s, field(s, record, F_ENI));
        if (eni < 0) {
            stats[S_RECORDS_READ]++;
            stats[S_OTHER_INTERFACE]++;
            return TAKEN;
        }
    }
    uint64_t packets, nbytes;
    if (number_field(s, record, F_PACKETS, &packets) != 1) return HAND_BACK; /* malformed or long */
    if (number_field(s, record, F_BYTES, &nbytes) != 1) return HAND_BACK;
    if (packets > s->max_packets || nbytes > s->max_bytes) return HAND_BACK; /* malformed: implausible */
    Token start_text = field(s, record, F_START), end_text = field(s, record, F_END);
    int64_t start, end;
    if (!is_dash(start_text) || !is_dash(end_text)) {
        uint64_t start_value, end_value;
        if (token_number(record, F_START, start_text, &start_value) != 1 ||
            token_number(record, F_END, end_text, &end_value) != 1)
            return HAND_BACK;
        start = flow_seconds(is_dash(start_text) ? end_value : start_value);
        end = is_dash(end_text) ? start : flow_seconds(end_value);
    } else if (s->has_fallback) {
        start = s->fallback_start;
        end = s->fallback_end;
    } else {
        return HAND_BACK; /* malformed: the reference keeps the example */
    }
    if (start < s->earliest || start > s->latest || end < s->earliest || end > s->latest) return HAND_BACK;
    /* Reduction.add */
    Token src_text = field(s, record, F_SRC), dst_text = field(s, record, F_DST);
    uint32_t src, dst;
    if (!record_ipv4(record, F_SRC, src_text, &src) || !record_ipv4(record, F_DST, dst_text, &dst))
        return HAND_BACK; /* IPv6, odd text */
    int src_nat = nat_address_find(s, src), dst_nat = nat_address_find(s, dst);
    if (eni < 0) { /* no interface-id: a NAT private IP on either side names the ENI */
        if (src_nat >= 0) eni = s->nat_addresses[src_nat].eni;
        if (eni < 0 && dst_nat >= 0) eni = s->nat_addresses[dst_nat].eni;
        if (eni < 0) {
            stats[S_RECORDS_READ]++;
            stats[S_OTHER_INTERFACE]++;
            return TAKEN;
        }
    }
    if (s->has_window && !(s->window_start <= start && start < s->window_end)) {
        stats[S_RECORDS_READ]++;
        stats[S_OUTSIDE_WINDOW]++;
        return TAKEN;
    }
    if (token_is(field(s, record, F_ACTION), "REJECT", 6)) {
        uint64_t total = stats[S_REJECTED_BYTES];
        if (add_to(&total, nbytes)) return HAND_BACK;
        stats[S_REJECTED_BYTES] = total;
        stats[S_RECORDS_READ]++;
        stats[S_REJECTED]++;
        return TAKEN;
    }
    uint8_t direction;
    uint32_t address;
    Token peer, service, far_end;
    int src_inside = regional && inside(s, src), dst_inside = regional && inside(s, dst);
    if (regional && src_inside != dst_inside) { /* reduce.regional_leg: the far end is the peer */
        direction = src_inside ? 0 : 1;
        address = src_inside ? src : dst;
        peer = src_inside ? dst_text : src_text;
        service = field(s, record, src_inside ? F_DST_SERVICE : F_SRC_SERVICE);
        far_end = (Token){NULL, -1}; /* never equal: the peer stays */
    } else if (regional) {
        return tally_record(s, eni, !src_inside, nbytes);
    } else if (dst_nat >= 0 && src_nat < 0 && inside(s, src)) {
        direction = 0; /* reduce.OUT */
        address = src;
        peer = field(s, record, F_PKT_DST);
        service = field(s, record, F_DST_SERVICE);
        far_end = dst_text;
    } else if (src_nat >= 0 && dst_nat < 0 && inside(s, dst)) {
        direction = 1; /* reduce.IN */
        address = dst;
        peer = field(s, record, F_PKT_SRC);
        service = field(s, record, F_SRC_SERVICE);
        far_end = src_text;
    } else {
        return tally_record(s, eni, src_nat >= 0 || dst_nat >= 0, nbytes);
    }
    /* `peer or ""`: '-' and the leg's own far end read as no peer; '-' service as none */
    if (is_dash(peer) || (peer.length == far_end.length && same_bytes(peer.text, far_end.text, peer.length)))
        peer.length = 0;
    if (is_dash(service)) service.length = 0;
    if (peer.length > UINT16_MAX || service.length > UINT16_MAX) return HAND_BACK;
    *leg = (Leg){(uint32_t)eni, address, direction, start / 60, start, end, peer, service, nbytes, packets, 0};
    leg->hash = leg_hash(leg);
    return CLIENT_LEG;
}

/* Reduction.add's sum of a client leg into its row: TAKEN, HAND_BACK (a sum past 64 bits) or NO_MEMORY. */
static int add_leg(Scanner *s, const Leg *leg) {
    Row *row = row_of(s, leg);
    if (!row) return NO_MEMORY;
    uint64_t row_bytes = row->bytes, row_packets = row->packets;
    if (add_to(&row_bytes, leg->bytes) || add_to(&row_packets, leg->packets) || row->records == UINT32_MAX)
        return HAND_BACK;
    row->bytes = row_bytes;
    row->packets = row_packets;
    int64_t second = leg->start - leg->minute * 60;
    if (second < row->first_second) row->first_second = (uint8_t)second;
    if (leg->end > row->last) row->last = leg->end;
    row->records++;
    s->stats[S_RECORDS_READ]++;
    s->stats[S_RECORDS_COUNTED]++;
    if (!s->has_times || leg->start < s->first_time) s->first_time = leg->start;
    if (!s->has_times || leg->end > s->last_time) s->last_time = leg->end;
    s->has_times = 1;
    return TAKEN;
}

static int add_record(Scanner *s, const Record *record) {
    Leg leg;
    int outcome = classify_record(s, record, &leg);
    return outcome == CLIENT_LEG ? add_leg(s, &leg) : outcome;
}

/* Token, newline and other bytes (neither token nor space) of 64 bytes, one bit each. */
static inline void classify64(const unsigned char *p, uint64_t *token, uint64_t *newline, uint64_t *other) {
    uint64_t t = 0, n = 0, space = 0;
#if defined(__SSE2__)
    const __m128i below = _mm_set1_epi8(0x20), above = _mm_set1_epi8(0x7F);
    const __m128i blank = _mm_set1_epi8(' '), end_of_line = _mm_set1_epi8('\n');
    for (int i = 0; i < 4; i++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * i));
        /* signed compares: bytes from 0x80 up are negative, so never tokens */
        __m128i is_token = _mm_and_si128(_mm_cmpgt_epi8(v, below), _mm_cmplt_epi8(v, above));
        t |= (uint64_t)(uint16_t)_mm_movemask_epi8(is_token) << (16 * i);
        n |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, end_of_line)) << (16 * i);
        space |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, blank)) << (16 * i);
    }
#else
    for (int i = 0; i < 64; i++) {
        t |= (uint64_t)(byte_class[p[i]] == TOKEN) << i;
        n |= (uint64_t)(p[i] == '\n') << i;
        space |= (uint64_t)(p[i] == ' ') << i;
    }
#endif
    *token = t;
    *newline = n;
    *other = ~(t | n | space);
}

/* The tokens of a line that holds bytes other than tokens, spaces and its newline, split as
 * str.split() splits (tabs and the like separate too); -1 when a byte is none of those. */
static int split_odd_line(const char *p, const char **starts) {
    int count = 0, in_token = 0;
    for (;; p++) {
        int kind = byte_class[(unsigned char)*p];
        if (kind == TOKEN) {
            if (!in_token && count < MAX_FIELDS) starts[count] = p;
            count += !in_token;
            in_token = 1;
        } else if (kind == NEWLINE) {
            return count;
        } else if (kind == SEPARATOR) {
            in_token = 0;
        } else {
            return -1;
        }
    }
}

/* What split_lines makes of a line: no fields; `width` fields (starts[width] one past its newline);
 * or unsure, for the reference to read (odd bytes it cannot split, another number of fields, longer
 * than the longest record). */
enum { LINE_BLANK, LINE_FIELDS, LINE_UNSURE };

/* Told each line text[begin:end] (end one past its newline), `index` counted from 0; 0, or -1 to stop. */
typedef int (*LineHandler)(void *context, int kind, const char *const *starts, Py_ssize_t index, Py_ssize_t begin,
                           Py_ssize_t end);

/* Every line of text[0:size] (whole lines, the last ending with a newline), 64 bytes at a time:
 * a line's tokens start where a token byte follows a non-token byte. Always inlined, so that each
 * caller's `handle` is inlined into its loop. The number of lines, or -1 when `handle` stopped. */
static inline __attribute__((always_inline)) Py_ssize_t split_lines(const char *text, Py_ssize_t size, int width,
                                                                    Py_ssize_t max_line, LineHandler handle,
                                                                    void *context) {
    const char *starts[MAX_FIELDS + 1];
    unsigned char tail[64];
    Py_ssize_t index = 0, line_begin = 0;
    int count = 0, odd = 0;
    uint64_t token_before = 0; /* the last byte of the previous 64 was a token byte */
    for (Py_ssize_t base = 0; base < size; base += 64) {
        const unsigned char *chunk = (const unsigned char *)text + base;
        if (size - base < 64) { /* past the end: spaces, which start nothing */
            memset(tail, ' ', sizeof tail);
            memcpy(tail, chunk, (size_t)(size - base));
            chunk = tail;
        }
        uint64_t token, newline, other;
        classify64(chunk, &token, &newline, &other);
        uint64_t token_starts = token & ~((token << 1) | token_before);
        token_before = token >> 63;
        for (;;) {
            /* the bits of the current line: all of them, or those before its newline */
            uint64_t before = newline ? (newline & -newline) - 1 : ~0ULL;
            for (uint64_t bits = token_starts & before; bits; bits &= bits - 1) {
                if (count < MAX_FIELDS) starts[count] = text + base + __builtin_ctzll(bits);
                count++;
            }
            odd |= (other & before) != 0;
            if (!newline) break;
            /* the newline: the line text[line_begin : line_end] is complete */
            Py_ssize_t line_end = base + __builtin_ctzll(newline) + 1;
            if (odd) count = split_odd_line(text + line_begin, starts);
            int kind = LINE_UNSURE;
            if (line_end - line_begin - 1 <= max_line) {
                if (count == width) {
                    starts[count] = text + line_end;
                    kind = LINE_FIELDS;
                } else if (count == 0)
                    kind = LINE_BLANK;
            }
            if (handle(context, kind, starts, index, line_begin, line_end) < 0) return -1;
            index++;
            line_begin = line_end;
            count = odd = 0;
            uint64_t done = before | (newline & -newline);
            token_starts &= ~done;
            other &= ~done;
            newline &= ~done;
        }
    }
    return index;
}

typedef struct {
    Scanner *s;
    Handback *handback;
    Py_ssize_t first_line;
} ScanContext;

/* A line of the scanner: counted, or handed back with its line number. */
static inline int scan_line(void *context, int kind, const char *const *starts, Py_ssize_t index, Py_ssize_t begin,
                            Py_ssize_t end) {
    ScanContext *c = context;
    int outcome = HAND_BACK;
    if (kind == LINE_BLANK)
        outcome = TAKEN;
    else if (kind == LINE_FIELDS) {
        Record record = {starts, NULL, NULL, NULL};
        outcome = add_record(c->s, &record);
    }
    if (outcome == NO_MEMORY) return -1;
    if (outcome == HAND_BACK && handback_add(c->handback, (Py_ssize_t[]){c->first_line + index, begin, end}, 3) < 0)
        return -1;
    return 0;
}

/* Every line of text[0:size] (whole lines, the last ending with a newline), counted or handed back. */
static int scan_lines(Scanner *s, const char *text, Py_ssize_t size, Py_ssize_t first_line, Handback *handback,
                      Py_ssize_t *lines) {
    ScanContext context = {s, handback, first_line};
    *lines = split_lines(text, size, s->width, s->max_line, scan_line, &context);
    return *lines < 0 ? -1 : 0;
}

/* -- Parquet columns ------------------------------------------------------------------------------ */

/* A used field's column of one Parquet batch, as Arrow holds it, without a copy: its values are
 * "entries" (string views: 16 bytes a value, the length, then the text itself up to 12 bytes, else
 * a prefix, a data buffer and an offset; strings: 32- or 64-bit offsets into one data buffer; or
 * int64 values), a row's entry is the row's own (a plain column) or its entry number (int32) in
 * `indices` (a dictionary column: `values` holds the dictionary), and a validity bitmap when there
 * are nulls. `offset` is row 0's place in the validity bitmap and the entry numbers. */
enum { COLUMN_VIEWS = 0, COLUMN_INT64 = 1, COLUMN_TEXT32 = 2, COLUMN_TEXT64 = 3 };
typedef struct {
    int kind, slot; /* slot: the field the column holds (F_COUNT: none the rules read) */
    Py_ssize_t offset;
    Py_buffer validity, values, indices; /* validity.obj NULL: no nulls; indices.obj NULL: a plain column */
    Py_buffer *data;
    Py_ssize_t data_count, entries;
    /* A dictionary text column's entries, each read once a batch: the token, its VALUE_* and what
     * the rules derive from it (ENI, resource and status: 1 when it makes its row one to read, see
     * row_wanted; an address: the IPv4 address or NOT_IPV4). */
    Token *entry_token;
    int8_t *entry_value;
    uint64_t *entry_derived;
} Column;

enum { VALUE_TOKEN = 1, VALUE_ODD = 0, VALUE_CORRUPT = -1 };
/* What a value must be, beyond what the rules read exactly whatever the text (numbers and addresses
 * are parsed strictly, status and action compared whole): an ENI id a printable-ASCII token, as the
 * scanner's NAT ENIs are; a peer or service ASCII, as merge_rows makes its str. */
enum { CHECK_NONE = 0, CHECK_TOKEN = 1, CHECK_ASCII = 2 };
static const unsigned char slot_check[F_COUNT + 1] = {
    [F_ENI] = CHECK_TOKEN, [F_RESOURCE] = CHECK_TOKEN, [F_PKT_SRC] = CHECK_ASCII, [F_PKT_DST] = CHECK_ASCII,
    [F_SRC_SERVICE] = CHECK_ASCII, [F_DST_SERVICE] = CHECK_ASCII,
};

/* A text value as add_record reads a line's token (readers._column_text: "None" reads as '-').
 * VALUE_ODD for what the text path never meets (an empty value, a value failing `check`): the
 * reference reads that row. */
static inline int text_value(const char *text, Py_ssize_t length, int check, Token *out) {
    static const Token dash = {"-", 1};
    if (length == 0) return VALUE_ODD;
    if (check == CHECK_TOKEN) {
        unsigned odd = 0;
        for (Py_ssize_t k = 0; k < length; k++) odd |= byte_class[(unsigned char)text[k]];
        if (odd) return VALUE_ODD; /* TOKEN is 0: any other class shows */
    } else if (check == CHECK_ASCII) {
        unsigned high = 0;
        for (Py_ssize_t k = 0; k < length; k++) high |= (unsigned char)text[k];
        if (high & 0x80) return VALUE_ODD;
    }
    *out = length == 4 && memcmp(text, "None", 4) == 0 ? dash : (Token){text, length};
    return VALUE_TOKEN;
}

/* An integer value as a token without text and the value in *number; VALUE_ODD for what a line's
 * digits never are (negative, more than MAX_DIGITS digits). */
static inline int integer_value(int64_t value, Token *out, uint64_t *number) {
    if (value < 0 || value >= 1000000000000000000LL) return VALUE_ODD;
    *out = (Token){NULL, 0};
    *number = (uint64_t)value;
    return VALUE_TOKEN;
}

/* Text entry `e` (below c->entries) of a text column, checked to lie inside its buffers. */
static inline int entry_text(const Column *c, Py_ssize_t e, int check, Token *out) {
    const char *text;
    int64_t length;
    if (c->kind == COLUMN_VIEWS) {
        const char *view = (const char *)c->values.buf + 16 * e;
        int32_t short_length;
        memcpy(&short_length, view, 4);
        length = short_length;
        if (length < 0) return VALUE_CORRUPT;
        if (length <= 12) {
            text = view + 4;
        } else {
            int32_t buffer, at;
            memcpy(&buffer, view + 8, 4);
            memcpy(&at, view + 12, 4);
            if (buffer < 0 || buffer >= c->data_count || at < 0 || (Py_ssize_t)at + length > c->data[buffer].len)
                return VALUE_CORRUPT;
            text = (const char *)c->data[buffer].buf + at;
        }
    } else {
        int64_t start, end;
        if (c->kind == COLUMN_TEXT32) {
            int32_t bounds[2];
            memcpy(bounds, (const char *)c->values.buf + 4 * e, 8);
            start = bounds[0], end = bounds[1];
        } else {
            int64_t bounds[2];
            memcpy(bounds, (const char *)c->values.buf + 8 * e, 16);
            start = bounds[0], end = bounds[1];
        }
        if (start < 0 || end < start || end > c->data[0].len || end - start > INT32_MAX) return VALUE_CORRUPT;
        text = (const char *)c->data[0].buf + start;
        length = end - start;
    }
    return text_value(text, (Py_ssize_t)length, check, out);
}

/* What the rules derive from a column's token in `slot` (see Column.entry_derived). */
static uint64_t derived_of(const Scanner *s, int slot, int value, Token t) {
    uint32_t address;
    switch (slot) {
    case F_ENI: /* an odd text is read by the reference, which decides */
        return value == VALUE_ODD || (value == VALUE_TOKEN && nat_eni_of(s, t) >= 0);
    case F_RESOURCE:
        return s->regional_count && (value == VALUE_ODD || (value == VALUE_TOKEN && regional_of_token(s, t) >= 0));
    case F_STATUS:
        return value == VALUE_TOKEN && (token_is(t, "NODATA", 6) || token_is(t, "SKIPDATA", 8));
    case F_SRC:
    case F_DST:
        return value == VALUE_TOKEN && read_ipv4(t, &address) ? address : NOT_IPV4;
    default:
        return 0;
    }
}

/* Row `row`'s value of a column as add_record reads a line's token (null reads as '-'), and what
 * the rules derive from it when `derived` is given. */
static inline int column_token(const Scanner *s, const Column *c, Py_ssize_t row, Token *out, uint64_t *number,
                               uint64_t *derived) {
    static const Token dash = {"-", 1};
    Py_ssize_t i = c->offset + row, e = row;
    const uint8_t *validity = c->validity.buf;
    if (validity && !((validity[i >> 3] >> (i & 7)) & 1)) {
        *out = dash;
        if (derived) *derived = derived_of(s, c->slot, VALUE_TOKEN, dash);
        return VALUE_TOKEN;
    }
    if (c->indices.obj) { /* a null's entry number may be anything: read only a valid row's */
        int32_t entry;
        memcpy(&entry, (const char *)c->indices.buf + 4 * i, 4);
        if (entry < 0 || entry >= c->entries) return VALUE_CORRUPT;
        e = entry;
        if (c->entry_token) {
            *out = c->entry_token[e];
            if (derived) *derived = c->entry_derived[e];
            return c->entry_value[e];
        }
    }
    if (c->kind == COLUMN_INT64) {
        int64_t value;
        memcpy(&value, (const char *)c->values.buf + 8 * e, 8);
        if (derived) *derived = c->slot == F_SRC || c->slot == F_DST ? NOT_IPV4 : 0; /* no text */
        return integer_value(value, out, number);
    }
    int value = entry_text(c, e, slot_check[c->slot], out);
    if (derived) *derived = derived_of(s, c->slot, value, *out);
    return value;
}

/* Whether a row is read at all: on a NAT ENI, of a regional NAT Gateway, or NODATA/SKIPDATA (the
 * others are other interfaces' records, whatever their other fields hold); -2: a corrupt value. */
static inline int row_wanted(const Scanner *s, const Column *columns, Py_ssize_t row) {
    static const int slots[] = {F_ENI, F_RESOURCE, F_STATUS};
    for (int k = 0; k < 3; k++) {
        int index = s->field[slots[k]];
        if (index < 0) continue;
        Token t;
        uint64_t number, derived = 0;
        if (column_token(s, &columns[index], row, &t, &number, &derived) == VALUE_CORRUPT) return -2;
        if (derived == 1) return 1;
    }
    return 0;
}

/* Rows read together: their values are gathered a column at a time (independent loads, many in
 * flight, where a row at a time waits on each column's), their client legs classified and their row
 * slots fetched ahead before they are summed. */
#define SCAN_BLOCK 64

/* Every row of `columns` (one per field of the layout); the positions of the rows the reference must
 * read go to `handback`, in row order. With an interface-id column, rows on other interfaces are only
 * counted. -1: out of memory; -2: a value outside its buffers. */
static int scan_rows(Scanner *s, const Column *columns, Py_ssize_t rows, Handback *handback) {
    static const Token dash = {"-", 1};
    Token tokens[SCAN_BLOCK][F_COUNT];
    uint64_t numbers[SCAN_BLOCK][F_COUNT], addresses[SCAN_BLOCK][F_COUNT];
    Py_ssize_t picked[SCAN_BLOCK];
    int outcome[SCAN_BLOCK];
    Leg legs[SCAN_BLOCK];
    int pick = s->field[F_ENI] >= 0;
    for (Py_ssize_t row = 0; row < rows;) {
        int count = 0;
        for (; row < rows && count < SCAN_BLOCK; row++) {
            if (pick) {
                int wanted = row_wanted(s, columns, row);
                if (wanted < 0) return -2;
                if (!wanted) {
                    s->stats[S_RECORDS_READ]++;
                    s->stats[S_OTHER_INTERFACE]++;
                    continue;
                }
            }
            picked[count] = row;
            outcome[count++] = TAKEN;
        }
        for (int slot = 0; slot < F_COUNT; slot++) {
            int index = s->field[slot], address_slot = slot == F_SRC || slot == F_DST;
            for (int k = 0; k < count; k++) {
                if (index < 0) {
                    tokens[k][slot] = dash;
                    addresses[k][slot] = NOT_IPV4;
                    continue;
                }
                if (outcome[k] != TAKEN) continue; /* odd already: the reference reads the row */
                int value = column_token(s, &columns[index], picked[k], &tokens[k][slot], &numbers[k][slot],
                                         address_slot ? &addresses[k][slot] : NULL);
                if (value == VALUE_CORRUPT) return -2;
                if (value == VALUE_ODD) outcome[k] = HAND_BACK;
            }
        }
        for (int k = 0; k < count; k++) {
            if (outcome[k] != TAKEN) continue;
            Record record = {NULL, tokens[k], numbers[k], addresses[k]};
            outcome[k] = classify_record(s, &record, &legs[k]);
            if (outcome[k] == CLIENT_LEG && s->slots) __builtin_prefetch(&s->slots[legs[k].hash & (s->slot_count - 1)]);
        }
        for (int k = 0; k < count; k++) {
            int done = outcome[k] == CLIENT_LEG ? add_leg(s, &legs[k]) : outcome[k];
            if (done == NO_MEMORY) return -1;
            if (done == HAND_BACK && handback_add(handback, &picked[k], 1) < 0) return -1;
        }
    }
    return 0;
}

/* Each entry of a dictionary text column read once (see Column); -1: out of memory. */
static int column_entries(const Scanner *s, Column *c) {
    if (!c->indices.obj || c->kind == COLUMN_INT64) return 0;
    size_t count = (size_t)c->entries + 1;
    c->entry_token = malloc(count * sizeof(Token));
    c->entry_value = malloc(count);
    c->entry_derived = malloc(count * sizeof(uint64_t));
    if (!c->entry_token || !c->entry_value || !c->entry_derived) return -1;
    for (Py_ssize_t e = 0; e < c->entries; e++) {
        Token t = {"-", 1};
        int value = entry_text(c, e, slot_check[c->slot], &t);
        c->entry_token[e] = t;
        c->entry_value[e] = (int8_t)value;
        c->entry_derived[e] = derived_of(s, c->slot, value, t);
    }
    return 0;
}

/* The positions in `h` as a list of int; frees them. */
static PyObject *handed_back_list(Handback *h) {
    PyObject *handed = PyList_New((Py_ssize_t)h->count);
    for (size_t i = 0; handed && i < h->count; i++) {
        PyObject *position = PyLong_FromSsize_t(h->items[i]);
        if (!position) Py_CLEAR(handed);
        else PyList_SET_ITEM(handed, (Py_ssize_t)i, position);
    }
    free(h->items);
    return handed;
}

/* -- Python ---------------------------------------------------------------------------------------- */

static void Scanner_dealloc(Scanner *s) {
    Py_XDECREF(s->kept);
    PyMem_Free(s->nat_enis);
    PyMem_Free(s->nat_eni_index);
    PyMem_Free(s->nat_eni_key);
    PyMem_Free(s->regional);
    PyMem_Free(s->regional_index);
    PyMem_Free(s->regional_key);
    PyMem_Free(s->unclassified);
    PyMem_Free(s->nat_addresses);
    PyMem_Free(s->inside_first);
    PyMem_Free(s->inside_last);
    free(s->rows);
    free(s->slots);
    free(s->arena);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static int read_pair(PyObject *item, const char *what, long long *first, long long *second) {
    if (!PyArg_ParseTuple(item, "LL", first, second)) {
        PyErr_Format(PyExc_TypeError, "%s: a pair of integers expected", what);
        return -1;
    }
    return 0;
}

/* None, or a pair of integers: *present says which. */
static int read_optional_pair(PyObject *item, const char *what, int *present, int64_t *first, int64_t *second) {
    long long a, b;
    *present = item != Py_None;
    if (!*present) return 0;
    if (read_pair(item, what, &a, &b) < 0) return -1;
    *first = a;
    *second = b;
    return 0;
}

static int compare_nat_addresses(const void *a, const void *b) {
    uint32_t x = ((const NatAddress *)a)->address, y = ((const NatAddress *)b)->address;
    return (x > y) - (x < y);
}

/* (bytes token, index) pairs of `items` into tokens, their eni_names index and token_key; -1 on error. */
static int read_tokens(PyObject *items, Py_ssize_t names, Token **tokens, int32_t **index, uint64_t **keys) {
    Py_ssize_t count = PyTuple_GET_SIZE(items);
    *tokens = PyMem_Calloc((size_t)count + 1, sizeof(Token));
    *index = PyMem_Calloc((size_t)count + 1, sizeof(int32_t));
    *keys = PyMem_Calloc((size_t)count + 1, sizeof(uint64_t));
    if (!*tokens || !*index || !*keys) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *token;
        int position;
        /* the bytes objects stay alive in the tuple, which the tokens point into: keep it */
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(items, i), "Si", &token, &position)) return -1;
        if (position < 0 || position >= names) {
            PyErr_SetString(PyExc_ValueError, "TextScanner: ENI index outside eni_names");
            return -1;
        }
        (*tokens)[i] = (Token){PyBytes_AS_STRING(token), PyBytes_GET_SIZE(token)};
        (*index)[i] = position;
        (*keys)[i] = token_key((*tokens)[i]);
    }
    return 0;
}

/* TextScanner(width, fields, eni_names, nat_enis, nat_addresses, inside, window, fallback, limits, regional=())
 *   fields: F_COUNT field positions (-1 absent), in the order of the F_ enum;
 *   eni_names: tuple of str; nat_enis: tuple of (bytes token, index); nat_addresses: tuple of
 *   (IPv4 as int, index or -1); inside: tuple of (first, last) IPv4 ints; window, fallback: pair or None;
 *   limits: (max packets, max bytes, earliest, latest start/end, max line bytes) of a record;
 *   regional: tuple of (bytes resource-id of a regional NAT Gateway, index). */
static int Scanner_init(Scanner *s, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"width", "fields", "eni_names", "nat_enis", "nat_addresses", "inside", "window",
                               "fallback", "limits", "regional", NULL};
    PyObject *fields, *eni_names, *nat_enis, *nat_addresses, *inside_ranges, *window, *fallback, *regional = NULL;
    unsigned long long max_packets, max_bytes;
    long long earliest, latest;
    Py_ssize_t max_line;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iO!O!O!O!O!OO(KKLLn)|O!", keywords, &s->width, &PyTuple_Type,
                                     &fields, &PyTuple_Type, &eni_names, &PyTuple_Type, &nat_enis, &PyTuple_Type,
                                     &nat_addresses, &PyTuple_Type, &inside_ranges, &window, &fallback, &max_packets,
                                     &max_bytes, &earliest, &latest, &max_line, &PyTuple_Type, &regional))
        return -1;
    if (max_line < 0) {
        PyErr_SetString(PyExc_ValueError, "TextScanner: a negative line length");
        return -1;
    }
    s->max_packets = max_packets;
    s->max_bytes = max_bytes;
    s->earliest = earliest;
    s->latest = latest;
    s->max_line = max_line;
    if (s->nat_enis) { /* __init__ again */
        PyErr_SetString(PyExc_RuntimeError, "TextScanner is initialised once");
        return -1;
    }
    if (s->width < 1 || s->width > MAX_FIELDS || PyTuple_GET_SIZE(fields) != F_COUNT) {
        PyErr_SetString(PyExc_ValueError, "TextScanner: unsupported layout");
        return -1;
    }
    for (int i = 0; i < F_COUNT; i++) {
        long index = PyLong_AsLong(PyTuple_GET_ITEM(fields, i));
        if (index == -1 && PyErr_Occurred()) return -1;
        if (index < -1 || index >= s->width) {
            PyErr_SetString(PyExc_ValueError, "TextScanner: field position outside the layout");
            return -1;
        }
        s->field[i] = (int)index;
    }
    Py_ssize_t names = PyTuple_GET_SIZE(eni_names);
    s->name_count = names;
    s->nat_eni_count = PyTuple_GET_SIZE(nat_enis);
    if (read_tokens(nat_enis, names, &s->nat_enis, &s->nat_eni_index, &s->nat_eni_key) < 0) return -1;
    if (!regional) regional = PyTuple_New(0);
    else Py_INCREF(regional);
    if (!regional) return -1;
    s->regional_count = PyTuple_GET_SIZE(regional);
    s->kept = PyTuple_Pack(3, eni_names, nat_enis, regional); /* the bytes the tokens point into */
    Py_DECREF(regional);
    if (!s->kept || read_tokens(PyTuple_GET_ITEM(s->kept, 2), names, &s->regional, &s->regional_index,
                                &s->regional_key) < 0)
        return -1;
    s->unclassified = PyMem_Calloc(2 * (size_t)names + 1, sizeof(uint64_t));
    s->nat_address_count = PyTuple_GET_SIZE(nat_addresses);
    s->nat_addresses = PyMem_Calloc((size_t)s->nat_address_count + 1, sizeof(NatAddress));
    s->inside_count = PyTuple_GET_SIZE(inside_ranges);
    s->inside_first = PyMem_Calloc((size_t)s->inside_count + 1, sizeof(uint32_t));
    s->inside_last = PyMem_Calloc((size_t)s->inside_count + 1, sizeof(uint32_t));
    if (!s->unclassified || !s->nat_addresses || !s->inside_first || !s->inside_last) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < s->nat_address_count; i++) {
        long long address, index;
        if (read_pair(PyTuple_GET_ITEM(nat_addresses, i), "nat_addresses", &address, &index) < 0) return -1;
        if (address < 0 || address > UINT32_MAX || index < -1 || index >= names) {
            PyErr_SetString(PyExc_ValueError, "TextScanner: NAT address or ENI index out of range");
            return -1;
        }
        s->nat_addresses[i].address = (uint32_t)address;
        s->nat_addresses[i].eni = (int32_t)index;
    }
    qsort(s->nat_addresses, (size_t)s->nat_address_count, sizeof(NatAddress), compare_nat_addresses);
    for (Py_ssize_t i = 0; i < s->inside_count; i++) {
        long long first, last;
        if (read_pair(PyTuple_GET_ITEM(inside_ranges, i), "inside", &first, &last) < 0) return -1;
        if (first < 0 || last > UINT32_MAX || first > last) {
            PyErr_SetString(PyExc_ValueError, "TextScanner: inside range outside IPv4");
            return -1;
        }
        s->inside_first[i] = (uint32_t)first;
        s->inside_last[i] = (uint32_t)last;
    }
    if (read_optional_pair(window, "window", &s->has_window, &s->window_start, &s->window_end) < 0 ||
        read_optional_pair(fallback, "fallback", &s->has_fallback, &s->fallback_start, &s->fallback_end) < 0)
        return -1;
    s->initialised = 1;
    return 0;
}

/* scan(buffer, start, end, first_line) -> (lines, handed_back): the lines of buffer[start:end]
 * (whole lines, the last ending with a newline) are read; handed_back is a list of
 * (line number, start, end) of the lines the reference must read, offsets into buffer. */
static PyObject *Scanner_scan(Scanner *s, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end, first_line;
    if (!s->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "TextScanner is not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &start, &end, &first_line)) return NULL;
    if (start < 0 || end > view.len || start > end || (end > start && ((const char *)view.buf)[end - 1] != '\n')) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan: the range must hold whole lines, the last ending with a newline");
        return NULL;
    }
    Handback handback = {NULL, 0, 0};
    Py_ssize_t lines = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = scan_lines(s, (const char *)view.buf + start, end - start, first_line, &handback, &lines);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (status < 0) {
        free(handback.items);
        return PyErr_NoMemory();
    }
    PyObject *handed = PyList_New((Py_ssize_t)(handback.count / 3));
    for (size_t i = 0; handed && i < handback.count; i += 3) {
        PyObject *item = Py_BuildValue("(nnn)", handback.items[i], handback.items[i + 1] + start,
                                       handback.items[i + 2] + start);
        if (!item) Py_CLEAR(handed);
        else PyList_SET_ITEM(handed, (Py_ssize_t)(i / 3), item);
    }
    free(handback.items);
    if (!handed) return NULL;
    return Py_BuildValue("(nN)", lines, handed);
}

static void columns_release(Column *columns, int count) {
    for (int i = 0; i < count; i++) {
        if (columns[i].validity.obj) PyBuffer_Release(&columns[i].validity);
        if (columns[i].values.obj) PyBuffer_Release(&columns[i].values);
        if (columns[i].indices.obj) PyBuffer_Release(&columns[i].indices);
        for (Py_ssize_t j = 0; columns[i].data && j < columns[i].data_count; j++)
            if (columns[i].data[j].obj) PyBuffer_Release(&columns[i].data[j]);
        PyMem_Free(columns[i].data);
        free(columns[i].entry_token);
        free(columns[i].entry_value);
        free(columns[i].entry_derived);
    }
}

/* One column's buffers from (kind, offset, validity or None, values, data buffers, entry numbers or
 * None, entries), checked to hold `rows` rows and `entries` entries (see Column). */
static int column_read(PyObject *item, Py_ssize_t rows, Column *c) {
    PyObject *validity, *values, *data, *indices;
    if (!PyArg_ParseTuple(item, "inOOO!On", &c->kind, &c->offset, &validity, &values, &PyTuple_Type, &data, &indices,
                          &c->entries))
        return -1;
    if (c->kind < COLUMN_VIEWS || c->kind > COLUMN_TEXT64 || c->offset < 0 || c->entries < 0 ||
        c->offset > PY_SSIZE_T_MAX / 4 - rows || c->entries > PY_SSIZE_T_MAX / 16 - 1) {
        PyErr_SetString(PyExc_ValueError, "scan_columns: unknown column kind, or an offset or entry count out of range");
        return -1;
    }
    if (validity != Py_None && PyObject_GetBuffer(validity, &c->validity, PyBUF_SIMPLE) < 0) return -1;
    if (PyObject_GetBuffer(values, &c->values, PyBUF_SIMPLE) < 0) return -1;
    if (indices != Py_None && PyObject_GetBuffer(indices, &c->indices, PyBUF_SIMPLE) < 0) return -1;
    c->data_count = PyTuple_GET_SIZE(data);
    c->data = PyMem_Calloc((size_t)c->data_count + 1, sizeof(Py_buffer));
    if (!c->data) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t j = 0; j < c->data_count; j++)
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(data, j), &c->data[j], PyBUF_SIMPLE) < 0) return -1;
    Py_ssize_t entries = c->entries, end = c->offset + rows, needed;
    switch (c->kind) {
    case COLUMN_VIEWS: needed = 16 * entries; break;
    case COLUMN_INT64: needed = 8 * entries; break;
    case COLUMN_TEXT32: needed = entries ? 4 * (entries + 1) : 0; break;
    default: needed = entries ? 8 * (entries + 1) : 0;
    }
    int text_offsets = c->kind == COLUMN_TEXT32 || c->kind == COLUMN_TEXT64;
    if (c->values.len < needed || (text_offsets && c->data_count != 1) ||
        (c->indices.obj ? c->indices.len / 4 < end : entries < rows) ||
        (c->validity.obj && c->validity.len < (end + 7) / 8)) {
        PyErr_SetString(PyExc_ValueError, "scan_columns: a column holds fewer values than rows or entries");
        return -1;
    }
    return 0;
}

/* scan_columns(columns, rows) -> handed_back: `rows` rows of a Parquet batch, one column per field
 * of the layout (`width` of them, see column_read); handed_back lists the positions of the rows the
 * reference must read. */
static PyObject *Scanner_scan_columns(Scanner *s, PyObject *args) {
    PyObject *items;
    Py_ssize_t rows;
    if (!s->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "TextScanner is not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!n", &PyTuple_Type, &items, &rows)) return NULL;
    if (PyTuple_GET_SIZE(items) != s->width || rows < 0) {
        PyErr_SetString(PyExc_ValueError, "scan_columns: one column per field of the layout expected");
        return NULL;
    }
    Column columns[MAX_FIELDS];
    memset(columns, 0, sizeof columns);
    for (int i = 0; i < s->width; i++) {
        columns[i].slot = F_COUNT;
        if (column_read(PyTuple_GET_ITEM(items, i), rows, &columns[i]) < 0) {
            columns_release(columns, i + 1);
            return NULL;
        }
    }
    for (int slot = 0; slot < F_COUNT; slot++)
        if (s->field[slot] >= 0) columns[s->field[slot]].slot = slot;
    Handback handback = {NULL, 0, 0};
    int status = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < s->width && status == 0; i++) status = column_entries(s, &columns[i]);
    if (status == 0) status = scan_rows(s, columns, rows, &handback);
    Py_END_ALLOW_THREADS
    columns_release(columns, s->width);
    if (status < 0) {
        free(handback.items);
        if (status == -2) PyErr_SetString(PyExc_ValueError, "scan_columns: a value points outside its buffers");
        else PyErr_NoMemory();
        return NULL;
    }
    return handed_back_list(&handback);
}
/* Python objects made once per merge and shared by the rows' keys: the same few addresses, peers
 * and services recur in many rows (and a shared str keeps its hash). Keys: an address + 1, or a
 * text's hash with the top bit set; texts are compared whole on a match. */
typedef struct {
    uint64_t *keys;
    PyObject **values;
    size_t size, used;
} ObjectCache;

static void cache_clear(ObjectCache *c) {
    for (size_t i = 0; i < c->size; i++) Py_XDECREF(c->values[i]);
    free(c->keys);
    free(c->values);
}

/* The slot of `key` (holding it, or free); NULL when out of memory. */
static size_t *cache_slot(ObjectCache *c, uint64_t key, const char *text, Py_ssize_t length, size_t *slot) {
    if ((c->used + 1) * 2 > c->size) {
        size_t size = c->size ? c->size * 2 : 1 << 10;
        uint64_t *keys = calloc(size, sizeof(uint64_t));
        PyObject **values = calloc(size, sizeof(PyObject *));
        if (!keys || !values) {
            free(keys);
            free(values);
            return NULL;
        }
        for (size_t i = 0; i < c->size; i++) {
            if (!c->keys[i]) continue;
            size_t j = (c->keys[i] * 0x9E3779B97F4A7C15ULL) >> 40 & (size - 1);
            while (keys[j]) j = (j + 1) & (size - 1);
            keys[j] = c->keys[i];
            values[j] = c->values[i];
        }
        free(c->keys);
        free(c->values);
        c->keys = keys;
        c->values = values;
        c->size = size;
    }
    size_t j = (key * 0x9E3779B97F4A7C15ULL) >> 40 & (c->size - 1);
    for (; c->keys[j]; j = (j + 1) & (c->size - 1)) {
        if (c->keys[j] != key) continue;
        if (!text) break;
        PyObject *known = c->values[j]; /* compact ASCII: one byte a character */
        if (PyUnicode_GET_LENGTH(known) == length && memcmp(PyUnicode_DATA(known), text, (size_t)length) == 0) break;
    }
    *slot = j;
    return slot;
}

/* A new reference to the str of an address. */
static PyObject *cached_address(ObjectCache *c, uint32_t a) {
    size_t slot;
    if (!cache_slot(c, (uint64_t)a + 1, NULL, 0, &slot)) return PyErr_NoMemory();
    if (!c->keys[slot]) {
        char text[16];
        int length =
            snprintf(text, sizeof text, "%u.%u.%u.%u", (a >> 24) & 255, (a >> 16) & 255, (a >> 8) & 255, a & 255);
        PyObject *value = PyUnicode_FromStringAndSize(text, length);
        if (!value) return NULL;
        c->keys[slot] = (uint64_t)a + 1;
        c->values[slot] = value;
        c->used++;
    }
    Py_INCREF(c->values[slot]);
    return c->values[slot];
}

/* A new reference to the str of an ASCII text. */
static PyObject *cached_text(ObjectCache *c, const char *text, Py_ssize_t length) {
    Token t = {text, length};
    uint64_t key = text_hash(0, t) | (1ULL << 63);
    size_t slot;
    if (!cache_slot(c, key, text, length, &slot)) return PyErr_NoMemory();
    if (!c->keys[slot]) {
        PyObject *value = PyUnicode_FromStringAndSize(text, length);
        if (!value) return NULL;
        c->keys[slot] = key;
        c->values[slot] = value;
        c->used++;
    }
    Py_INCREF(c->values[slot]);
    return c->values[slot];
}

static PyObject *row_key(const Scanner *s, const Row *row, ObjectCache *cache) {
    PyObject *eni = PyTuple_GET_ITEM(PyTuple_GET_ITEM(s->kept, 0), row->eni);
    Py_INCREF(eni);
    PyObject *items[6] = {
        eni,
        cached_address(cache, row->address),
        PyLong_FromLong(row->direction),
        PyLong_FromLongLong(row->minute),
        cached_text(cache, row->peer_len ? s->arena + row->peer_at : "", row->peer_len),
        cached_text(cache, row->service_len ? s->arena + row->service_at : "", row->service_len),
    };
    PyObject *key = PyTuple_New(6);
    for (int i = 0; i < 6; i++) {
        if (!key || !items[i]) {
            for (int j = i; j < 6; j++) Py_XDECREF(items[j]);
            Py_XDECREF(key);
            return NULL;
        }
        PyTuple_SET_ITEM(key, i, items[i]);
    }
    return key;
}

/* value[index] = value[index] (+, min or max) number, in Python integers. */
static int fold(PyObject *value, Py_ssize_t index, PyObject *number, int op) {
    PyObject *old = PyList_GET_ITEM(value, index), *result;
    if (op == 0) {
        result = PyNumber_Add(old, number);
    } else {
        int less = PyObject_RichCompareBool(number, old, Py_LT);
        if (less < 0) return -1;
        result = (op < 0) == (less == 1) ? number : old;
        Py_INCREF(result);
    }
    if (!result) return -1;
    PyList_SetItem(value, index, result); /* steals result, drops old */
    return 0;
}

static PyObject *merge_rows_into(Scanner *s, PyObject *rows, ObjectCache *cache);

/* merge_rows(rows): add the reduced rows into `rows`, a dict keyed as reduce.RowKey with values
 * [bytes, packets, first start, last end, records], as Reduction.merge adds them. */
static PyObject *Scanner_merge_rows(Scanner *s, PyObject *rows) {
    if (!PyDict_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "merge_rows: a dict expected");
        return NULL;
    }
    if (!s->initialised) Py_RETURN_NONE;
    ObjectCache cache = {NULL, NULL, 0, 0};
    /* New keys and values make no cycles: the collector would only walk the growing dict again and again */
    int collecting = PyGC_Disable();
    PyObject *outcome = merge_rows_into(s, rows, &cache);
    if (collecting) PyGC_Enable();
    cache_clear(&cache);
    return outcome;
}

static PyObject *merge_rows_into(Scanner *s, PyObject *rows, ObjectCache *cache) {
    for (size_t i = 0; i < s->row_count; i++) {
        const Row *row = &s->rows[i];
        PyObject *key = row_key(s, row, cache);
        if (!key) return NULL;
        PyObject *numbers[5] = {
            PyLong_FromUnsignedLongLong(row->bytes), PyLong_FromUnsignedLongLong(row->packets),
            PyLong_FromLongLong(row->minute * 60 + row->first_second), PyLong_FromLongLong(row->last),
            PyLong_FromUnsignedLongLong(row->records),
        };
        int failed = !numbers[0] || !numbers[1] || !numbers[2] || !numbers[3] || !numbers[4];
        PyObject *known = failed ? NULL : PyDict_GetItemWithError(rows, key);
        if (!failed && !known && !PyErr_Occurred()) {
            PyObject *value = PyList_New(5);
            failed = !value;
            for (int j = 0; value && j < 5; j++) {
                Py_INCREF(numbers[j]);
                PyList_SET_ITEM(value, j, numbers[j]);
            }
            failed = failed || PyDict_SetItem(rows, key, value) < 0;
            Py_XDECREF(value);
        } else if (!failed && known) {
            failed = !PyList_CheckExact(known) || PyList_GET_SIZE(known) != 5 || fold(known, 0, numbers[0], 0) < 0 ||
                     fold(known, 1, numbers[1], 0) < 0 || fold(known, 2, numbers[2], -1) < 0 ||
                     fold(known, 3, numbers[3], 1) < 0 || fold(known, 4, numbers[4], 0) < 0;
            if (failed && !PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "merge_rows: a row is not a list of 5");
        } else {
            failed = 1;
        }
        for (int j = 0; j < 5; j++) Py_XDECREF(numbers[j]);
        Py_DECREF(key);
        if (failed) return NULL;
    }
    Py_RETURN_NONE;
}

/* stats() -> {ReductionStats field: count} */
static PyObject *Scanner_stats(Scanner *s, PyObject *Py_UNUSED(ignored)) {
    PyObject *stats = PyDict_New();
    for (int i = 0; stats && i < S_COUNT; i++) {
        PyObject *value = PyLong_FromUnsignedLongLong(s->stats[i]);
        if (!value || PyDict_SetItemString(stats, stat_names[i], value) < 0) Py_CLEAR(stats);
        Py_XDECREF(value);
    }
    return stats;
}

/* unclassified() -> {eni_names entry: (records, bytes)} of the unclassified records, by reduced-row key */
static PyObject *Scanner_unclassified(Scanner *s, PyObject *Py_UNUSED(ignored)) {
    PyObject *found = PyDict_New();
    for (Py_ssize_t i = 0; found && s->initialised && i < s->name_count; i++) {
        if (!s->unclassified[2 * i]) continue;
        PyObject *pair = Py_BuildValue("(KK)", (unsigned long long)s->unclassified[2 * i],
                                       (unsigned long long)s->unclassified[2 * i + 1]);
        if (!pair || PyDict_SetItem(found, PyTuple_GET_ITEM(PyTuple_GET_ITEM(s->kept, 0), i), pair) < 0) Py_CLEAR(found);
        Py_XDECREF(pair);
    }
    return found;
}

/* times() -> (first start, last end) of the counted records, or None */
static PyObject *Scanner_times(Scanner *s, PyObject *Py_UNUSED(ignored)) {
    if (!s->has_times) Py_RETURN_NONE;
    return Py_BuildValue("(LL)", (long long)s->first_time, (long long)s->last_time);
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)Scanner_scan, METH_VARARGS, "Read whole lines; returns (lines, handed back)."},
    {"scan_columns", (PyCFunction)Scanner_scan_columns, METH_VARARGS, "Read Parquet rows; returns the handed back."},
    {"merge_rows", (PyCFunction)Scanner_merge_rows, METH_O, "Add the reduced rows into a dict of reduce.RowKey."},
    {"stats", (PyCFunction)Scanner_stats, METH_NOARGS, "The counters, by ReductionStats field."},
    {"times", (PyCFunction)Scanner_times, METH_NOARGS, "(first start, last end) of the counted records."},
    {"unclassified", (PyCFunction)Scanner_unclassified, METH_NOARGS, "Unclassified (records, bytes) by row key."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "natflow.flowlogs._textscan.TextScanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One text flow-log file's lines, reduced as readers.add_parts and Reduction.add do.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
};

/* -- reduced rows as columns ---------------------------------------------------------------------- */

/* The code of `value` among the distinct values met so far (`index`: value -> code, `distinct`: in
 * the order first met); -1 with an exception set on failure. */
static int64_t code_of(PyObject *index, PyObject *distinct, PyObject *value) {
    PyObject *known = PyDict_GetItemWithError(index, value);
    if (known) return PyLong_AsLongLong(known);
    if (PyErr_Occurred()) return -1;
    Py_ssize_t code = PyList_GET_SIZE(distinct);
    PyObject *number = PyLong_FromSsize_t(code);
    int failed = !number || PyDict_SetItem(index, value, number) < 0 || PyList_Append(distinct, value) < 0;
    Py_XDECREF(number);
    return failed ? -1 : code;
}

/* An int64 of a row, or -1 with an exception set. */
static int row_int64(PyObject *value, int64_t *out) {
    if (!PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "row_columns: a reduced row holds a non-integer");
        return -1;
    }
    *out = PyLong_AsLongLong(value);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* row_columns(rows) -> (enis, eni_codes, addresses, directions, peers, destinations, destination_codes,
 * bytes, packets, firsts, lasts): a dict of reduce.RowKey -> RowValue as columns, in the dict's order.
 * ENIs and destinations (the service, else the peer) as their distinct values in the order first met
 * and each row's code among them; bytes and packets as lists of int (sums may pass 64 bits); codes,
 * directions, first starts and last ends as int64 arrays (bytearrays). */
static PyObject *row_columns(PyObject *Py_UNUSED(module), PyObject *rows) {
    if (!PyDict_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "row_columns: a dict of reduced rows expected");
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(rows);
    PyObject *enis = PyList_New(0), *eni_index = PyDict_New(), *addresses = PyList_New(n), *peers = PyList_New(n);
    PyObject *destinations = PyList_New(0), *destination_index = PyDict_New();
    PyObject *byte_list = PyList_New(n), *packet_list = PyList_New(n);
    PyObject *arrays[5] = {NULL}; /* eni codes, directions, destination codes, firsts, lasts */
    for (int i = 0; i < 5; i++) arrays[i] = PyByteArray_FromStringAndSize(NULL, n * 8);
    PyObject *result = NULL;
    if (!enis || !eni_index || !addresses || !peers || !destinations || !destination_index || !byte_list ||
        !packet_list || !arrays[0] || !arrays[1] || !arrays[2] || !arrays[3] || !arrays[4])
        goto done;
    int64_t *eni_codes = (int64_t *)PyByteArray_AS_STRING(arrays[0]), *directions = (int64_t *)PyByteArray_AS_STRING(arrays[1]);
    int64_t *destination_codes = (int64_t *)PyByteArray_AS_STRING(arrays[2]);
    int64_t *firsts = (int64_t *)PyByteArray_AS_STRING(arrays[3]), *lasts = (int64_t *)PyByteArray_AS_STRING(arrays[4]);
    Py_ssize_t position = 0, row = 0;
    PyObject *key, *value;
    while (PyDict_Next(rows, &position, &key, &value)) {
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 6 || !PyList_Check(value) || PyList_GET_SIZE(value) != 5) {
            PyErr_SetString(PyExc_TypeError, "row_columns: rows are (eni, address, direction, minute, peer, service) -> "
                                             "[bytes, packets, first start, last end, records]");
            goto done;
        }
        PyObject *service = PyTuple_GET_ITEM(key, 5), *peer = PyTuple_GET_ITEM(key, 4);
        int has_service = PyObject_IsTrue(service);
        if (has_service < 0) goto done;
        int64_t eni = code_of(eni_index, enis, PyTuple_GET_ITEM(key, 0));
        int64_t destination = eni < 0 ? -1 : code_of(destination_index, destinations, has_service ? service : peer);
        if (destination < 0 || row_int64(PyTuple_GET_ITEM(key, 2), &directions[row]) < 0 ||
            row_int64(PyList_GET_ITEM(value, 2), &firsts[row]) < 0 || row_int64(PyList_GET_ITEM(value, 3), &lasts[row]) < 0)
            goto done;
        eni_codes[row] = eni;
        destination_codes[row] = destination;
        PyObject *address = PyTuple_GET_ITEM(key, 1), *bytes = PyList_GET_ITEM(value, 0), *packets = PyList_GET_ITEM(value, 1);
        Py_INCREF(address);
        PyList_SET_ITEM(addresses, row, address);
        Py_INCREF(peer);
        PyList_SET_ITEM(peers, row, peer);
        Py_INCREF(bytes);
        PyList_SET_ITEM(byte_list, row, bytes);
        Py_INCREF(packets);
        PyList_SET_ITEM(packet_list, row, packets);
        row++;
    }
    result = Py_BuildValue("(OOOOOOOOOOO)", enis, arrays[0], addresses, arrays[1], peers, destinations, arrays[2],
                           byte_list, packet_list, arrays[3], arrays[4]);
done:
    /* lists not filled to the end (an error) hold NULLs, which list dealloc skips */
    Py_XDECREF(enis);
    Py_XDECREF(eni_index);
    Py_XDECREF(addresses);
    Py_XDECREF(peers);
    Py_XDECREF(destinations);
    Py_XDECREF(destination_index);
    Py_XDECREF(byte_list);
    Py_XDECREF(packet_list);
    for (int i = 0; i < 5; i++) Py_XDECREF(arrays[i]);
    return result;
}

/* -- filter mode (natflow trace): the lines naming given addresses ---------------------------------- */

#define FEW_ADDRESSES 16

/* The addresses a filter looks for: IPv4 as sorted integers, other texts (IPv6) compared whole. */
typedef struct {
    const uint32_t *ipv4;
    Py_ssize_t ipv4_count;
    const Token *texts;
    Py_ssize_t text_count;
    const int *fields;
    int field_count, width;
    const uint32_t *inside; /* (first, last) pairs: a collected line's other end must be outside them */
    Py_ssize_t inside_count;
    /* A few IPv4 addresses are found by their dotted-quad text (what read_ipv4 accepts is exactly
     * that text), which costs less than reading every address field as a number. */
    int by_text;
    char quads[FEW_ADDRESSES][16];
    unsigned char quad_length[FEW_ADDRESSES];
} AddressFilter;

static int filter_has_ipv4(const AddressFilter *f, uint32_t address) {
    Py_ssize_t low = 0, high = f->ipv4_count;
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (f->ipv4[middle] < address)
            low = middle + 1;
        else
            high = middle;
    }
    return low < f->ipv4_count && f->ipv4[low] == address;
}

/* A field's token (fields from starts[], starts[width] one past the newline). */
static inline Token filter_field(const char *const *starts, int index) {
    const char *end = starts[index + 1] - 1;
    while ((unsigned char)end[-1] <= ' ') end--;
    return (Token){starts[index], end - starts[index]};
}

/* Whether a token is one of the filter's addresses. */
static inline int filter_holds(const AddressFilter *f, Token t) {
    if (f->by_text) {
        for (Py_ssize_t j = 0; j < f->ipv4_count; j++)
            if (t.length == f->quad_length[j] && same_bytes(t.text, f->quads[j], t.length)) return 1;
    } else {
        uint32_t address;
        if (read_ipv4(t, &address)) return filter_has_ipv4(f, address);
    }
    for (Py_ssize_t j = 0; j < f->text_count; j++)
        if (t.length == f->texts[j].length && same_bytes(t.text, f->texts[j].text, t.length)) return 1;
    return 0;
}

/* Whether one of the line's address fields is an address of the filter. */
static int line_matches(const AddressFilter *f, const char *const *starts) {
    for (int i = 0; i < f->field_count; i++)
        if (filter_holds(f, filter_field(starts, f->fields[i]))) return 1;
    return 0;
}

/* The collect rule: one of the fields holds an address of `f` and another one an IPv4 address
 * outside its inside ranges (a NAT gateway's internet leg: its own address and a remote one). */
static int line_collected(const AddressFilter *f, const char *const *starts) {
    int found = -1;
    for (int i = 0; i < f->field_count && found < 0; i++)
        if (filter_holds(f, filter_field(starts, f->fields[i]))) found = i;
    if (found < 0) return 0;
    for (int i = 0; i < f->field_count; i++) {
        uint32_t address;
        if (i == found || !read_ipv4(filter_field(starts, f->fields[i]), &address) || filter_has_ipv4(f, address))
            continue;
        int in = 0;
        for (Py_ssize_t j = 0; j < f->inside_count && !in; j++)
            in = address >= f->inside[2 * j] && address <= f->inside[2 * j + 1];
        if (!in) return 1;
    }
    return 0;
}

/* Bytes gathered by a scan (the collected lines). */
typedef struct {
    char *text;
    size_t size, capacity;
} Gathered;

static int gathered_add(Gathered *g, const char *text, size_t size) {
    if (g->size + size > g->capacity) {
        size_t capacity = g->capacity ? g->capacity : 1 << 16;
        while (capacity < g->size + size) capacity *= 2;
        char *grown = realloc(g->text, capacity);
        if (!grown) return -1;
        g->text = grown;
        g->capacity = capacity;
    }
    memcpy(g->text + g->size, text, size);
    g->size += size;
    return 0;
}

typedef struct {
    const AddressFilter *f, *collect;
    const char *text;
    Handback *kept;
    Gathered *collected;
    Py_ssize_t rejected;
} FilterContext;

/* A line of the filter: kept (matching, or unsure), collected, or passed over. */
static inline int filter_line(void *context, int kind, const char *const *starts, Py_ssize_t index, Py_ssize_t begin,
                              Py_ssize_t end) {
    FilterContext *c = context;
    int keep = kind == LINE_UNSURE || (kind == LINE_FIELDS && line_matches(c->f, starts));
    if (keep) return handback_add(c->kept, (Py_ssize_t[]){index, begin, end}, 3);
    if (kind != LINE_FIELDS) return 0;
    c->rejected++;
    if (c->collect->field_count && line_collected(c->collect, starts) &&
        gathered_add(c->collected, c->text + begin, (size_t)(end - begin)) < 0)
        return -1;
    return 0;
}

/* The lines of text[0:size] (whole lines) that match `f`, or that this code cannot split with
 * certainty (odd bytes, another number of fields, longer than max_line): (index, start, end) triples
 * in `kept`; the other lines that match `collect` are copied whole into `collected`. */
static int filter_text(const AddressFilter *f, const AddressFilter *collect, const char *text, Py_ssize_t size,
                       Py_ssize_t max_line, Handback *kept, Gathered *collected, Py_ssize_t *lines,
                       Py_ssize_t *rejected) {
    FilterContext context = {f, collect, text, kept, collected, 0};
    *lines = split_lines(text, size, f->width, max_line, filter_line, &context);
    *rejected = context.rejected;
    return *lines < 0 ? -1 : 0;
}

/* Fields and addresses of one AddressFilter from Python: a tuple of field positions (each below
 * `width`), a bytes of sorted native uint32 IPv4 addresses; 0, or -1 with an exception set. */
static int filter_read(AddressFilter *f, int width, PyObject *fields, Py_buffer *addresses, int *positions) {
    f->width = width;
    f->fields = positions;
    f->field_count = (int)PyTuple_GET_SIZE(fields);
    f->ipv4 = (const uint32_t *)addresses->buf;
    f->ipv4_count = addresses->len / (Py_ssize_t)sizeof(uint32_t);
    f->inside = NULL;
    f->inside_count = 0;
    if (f->field_count > MAX_FIELDS || addresses->len % (Py_ssize_t)sizeof(uint32_t)) {
        PyErr_SetString(PyExc_ValueError, "filter_lines: too many fields or a partial address");
        return -1;
    }
    for (int i = 0; i < f->field_count; i++) {
        long index = PyLong_AsLong(PyTuple_GET_ITEM(fields, i));
        if (index == -1 && PyErr_Occurred()) return -1;
        if (index < 0 || index >= width) {
            PyErr_SetString(PyExc_ValueError, "filter_lines: field position outside the layout");
            return -1;
        }
        positions[i] = (int)index;
    }
    for (Py_ssize_t i = 1; i < f->ipv4_count; i++)
        if (f->ipv4[i - 1] > f->ipv4[i]) {
            PyErr_SetString(PyExc_ValueError, "filter_lines: IPv4 addresses must be sorted");
            return -1;
        }
    f->by_text = f->ipv4_count <= FEW_ADDRESSES;
    for (Py_ssize_t i = 0; f->by_text && i < f->ipv4_count; i++) {
        uint32_t a = f->ipv4[i];
        int length = snprintf(f->quads[i], sizeof f->quads[i], "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
                              a & 255);
        f->quad_length[i] = (unsigned char)length;
    }
    return 0;
}

/* filter_lines(buffer, start, end, width, fields, ipv4, texts, collect_fields, collect_ipv4, collect_inside,
 *              max_line) -> (lines, rejected, kept, collected)
 * The lines of buffer[start:end] (whole lines, the last ending with a newline) of `width` fields
 * whose fields at the positions `fields` hold one of the addresses (`ipv4`: a bytes of sorted native
 * uint32; `texts`: a tuple of bytes, compared whole), and the lines it cannot split with certainty
 * (or longer than `max_line` bytes before the newline):
 * `kept` lists their (line index from 0, start, end), offsets into buffer, for the caller to read
 * again. Of the other lines, those where one of `collect_fields` holds one of `collect_ipv4` and
 * another an address outside the ranges `collect_inside` (native uint32 first, last pairs) are
 * returned whole, one after the other, in `collected` (bytes). `lines` counts every line, `rejected` the lines with fields that
 * were not kept (records read and passed over, collected or not). */
static PyObject *filter_lines(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer view, addresses, collect_addresses, collect_inside;
    Py_ssize_t start, end, max_line;
    int width;
    PyObject *fields, *texts, *collect_fields;
    if (!PyArg_ParseTuple(args, "y*nniO!y*O!O!y*y*n", &view, &start, &end, &width, &PyTuple_Type, &fields, &addresses,
                          &PyTuple_Type, &texts, &PyTuple_Type, &collect_fields, &collect_addresses, &collect_inside,
                          &max_line))
        return NULL;
    PyObject *result = NULL;
    int positions[MAX_FIELDS], collect_positions[MAX_FIELDS];
    Token text_tokens[64];
    AddressFilter f, collect;
    Handback kept = {NULL, 0, 0};
    Gathered collected = {NULL, 0, 0};
    if (start < 0 || end > view.len || start > end || (end > start && ((const char *)view.buf)[end - 1] != '\n')) {
        PyErr_SetString(PyExc_ValueError, "filter_lines: the range must hold whole lines, the last ending with a newline");
        goto done;
    }
    if (width < 1 || width > MAX_FIELDS || PyTuple_GET_SIZE(texts) > 64 || max_line < 0) {
        PyErr_SetString(PyExc_ValueError, "filter_lines: unsupported layout, too many texts or a negative max_line");
        goto done;
    }
    if (filter_read(&f, width, fields, &addresses, positions) < 0 ||
        filter_read(&collect, width, collect_fields, &collect_addresses, collect_positions) < 0)
        goto done;
    if (collect_inside.len % (Py_ssize_t)(2 * sizeof(uint32_t))) {
        PyErr_SetString(PyExc_ValueError, "filter_lines: collect_inside must hold (first, last) pairs");
        goto done;
    }
    collect.inside = (const uint32_t *)collect_inside.buf;
    collect.inside_count = collect_inside.len / (Py_ssize_t)(2 * sizeof(uint32_t));
    f.texts = text_tokens;
    f.text_count = PyTuple_GET_SIZE(texts);
    collect.texts = NULL;
    collect.text_count = 0;
    for (Py_ssize_t i = 0; i < f.text_count; i++) {
        PyObject *item = PyTuple_GET_ITEM(texts, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "filter_lines: texts must be bytes");
            goto done;
        }
        text_tokens[i] = (Token){PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item)};
    }
    Py_ssize_t lines = 0, rejected = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = filter_text(&f, &collect, (const char *)view.buf + start, end - start, max_line, &kept, &collected, &lines,
                         &rejected);
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *spans = PyList_New((Py_ssize_t)(kept.count / 3));
    for (size_t i = 0; spans && i < kept.count; i += 3) {
        PyObject *item = Py_BuildValue("(nnn)", kept.items[i], kept.items[i + 1] + start, kept.items[i + 2] + start);
        if (!item) Py_CLEAR(spans);
        else PyList_SET_ITEM(spans, (Py_ssize_t)(i / 3), item);
    }
    if (spans) result = Py_BuildValue("(nnNy#)", lines, rejected, spans, collected.text ? collected.text : "",
                                      (Py_ssize_t)collected.size);
done:
    free(kept.items);
    free(collected.text);
    PyBuffer_Release(&view);
    PyBuffer_Release(&addresses);
    PyBuffer_Release(&collect_addresses);
    PyBuffer_Release(&collect_inside);
    return result;
}

static PyMethodDef module_methods[] = {
    {"row_columns", row_columns, METH_O, "Reduced rows (a dict) as columns."},
    {"filter_lines", filter_lines, METH_VARARGS, "The lines naming given addresses (natflow trace)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_textscan",
    .m_doc = "Compiled reduction of S3 text flow-log lines.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__textscan(void) {
    for (int c = 0; c < 256; c++) byte_class[c] = (c > 0x20 && c < 0x7F) ? TOKEN : OTHER;
    /* str.split()'s ASCII whitespace, but for the line ends (\r never reaches a scan) */
    byte_class[' '] = byte_class['\t'] = byte_class['\v'] = byte_class['\f'] = SEPARATOR;
    byte_class[0x1C] = byte_class[0x1D] = byte_class[0x1E] = byte_class[0x1F] = SEPARATOR;
    byte_class['\n'] = NEWLINE;
    if (PyType_Ready(&ScannerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "TextScanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

#include "names.h"

#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "lq_assert.h"

static uint64_t hash_str(lq_str s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint32_t i = 0; i < s.len; i++) {
        h ^= (uint8_t)s.ptr[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

void lq_names_free(lq_names *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        free(t->v[i].s);
    free(t->v);
    free(t->buckets);
    memset(t, 0, sizeof *t);
}

static uint32_t lookup(const lq_names *t, lq_str s, uint64_t h)
{
    if (!t->buckets)
        return LQ_NONE;
    for (uint32_t b = (uint32_t)h & t->mask;; b = (b + 1) & t->mask) {
        uint32_t id = t->buckets[b];
        if (id == LQ_NONE)
            return LQ_NONE;
        const lq_name *e = &t->v[id];
        if (e->hash == h && e->len == s.len && (s.len == 0 || memcmp(e->s, s.ptr, s.len) == 0))
            return id;
    }
}

uint32_t lq_names_find(const lq_names *t, lq_str s) { return lookup(t, s, hash_str(s)); }

static lq_err grow_buckets(lq_names *t)
{
    uint32_t nb = t->buckets ? (t->mask + 1) * 2 : 64;
    uint32_t *b = malloc((size_t)nb * sizeof *b); /* owner: t */
    if (!b)
        return LQ_E_NOMEM;
    memset(b, 0xff, (size_t)nb * sizeof *b);
    for (uint32_t id = 0; id < t->n; id++) {
        uint32_t i = (uint32_t)t->v[id].hash & (nb - 1);
        while (b[i] != LQ_NONE)
            i = (i + 1) & (nb - 1);
        b[i] = id;
    }
    free(t->buckets);
    t->buckets = b;
    t->mask = nb - 1;
    return LQ_OK;
}

lq_err lq_names_intern(lq_names *t, lq_str s, uint32_t *id)
{
    uint64_t h = hash_str(s);
    uint32_t found = lookup(t, s, h);
    if (found != LQ_NONE) {
        *id = found;
        return LQ_OK;
    }
    if (s.len > LQ_NAME_MAX || t->n >= LQ_NONE - 1)
        return LQ_E_LIMIT;
    if (!t->buckets || (uint64_t)(t->n + 1) * 2 > (uint64_t)t->mask + 1) {
        lq_err e = grow_buckets(t);
        if (e != LQ_OK)
            return e;
    }
    if (t->n == t->cap) {
        uint32_t ncap = t->cap ? t->cap * 2 : 64;
        lq_name *nv = realloc(t->v, (size_t)ncap * sizeof *nv); /* owner: t */
        if (!nv)
            return LQ_E_NOMEM;
        t->v = nv;
        t->cap = ncap;
    }
    char *copy = malloc((size_t)s.len + 1); /* owner: t, freed in lq_names_free */
    if (!copy)
        return LQ_E_NOMEM;
    if (s.len)
        memcpy(copy, s.ptr, s.len);
    copy[s.len] = '\0';
    uint32_t nid = t->n++;
    t->v[nid] = (lq_name){copy, s.len, h};
    uint32_t b = (uint32_t)h & t->mask;
    while (t->buckets[b] != LQ_NONE)
        b = (b + 1) & t->mask;
    t->buckets[b] = nid;
    *id = nid;
    return LQ_OK;
}

bool lq_name_valid(lq_str s)
{
    if (s.len == 0 || s.len > LQ_NAME_MAX || !s.ptr || s.ptr[0] == '-')
        return false;
    for (uint32_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  (c != '\0' && strchr("-+/;.$_()", c) != NULL);
        if (!ok)
            return false;
    }
    return true;
}

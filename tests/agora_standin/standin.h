/*
 * A stand-in for Agora's native server library (libagora_rtc_sdk.so), for tests.
 *
 * The real Python wrapper of agora-python-server-sdk (unmodified) loads this
 * instead of Agora's library and drives it through ctypes. "standin_gen.h" is
 * generated from the wrapper's own ctypes objects (tests/agora_standin/generate.py):
 * every structure with its layout asserted against ctypes, every callback type
 * and the prototype of every bound function. wrapper.py adds a weak stub for
 * every bound function not modelled here; a stub records the call (strict mode
 * fails the test).
 *
 * Modelled: the subset the recorder's transport uses (docs/providers.md,
 * "Agora: the stand-in"). Per connection, a native thread with an absolute
 * clock (10 ms a tick, scalable) runs the connection's events and, each tick,
 * delivers one frame per speaking, announced, unmuted remote host and plays
 * out 10 ms of the bot's published PCM into a capture. Tests drive it through
 * the standin_* exports (ctypes).
 *
 * It reproduces the ABI the wrapper declares, not Agora's real threads,
 * timings or event order beyond what docs/providers.md documents.
 */
#pragma once
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "standin_gen.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Layouts this model relies on, pinned (x86_64, as ctypes computes them): an sdist
 * that changes one fails the build here, not at run time. */
_Static_assert(sizeof(struct AudioFrameInner) == 88, "AudioFrameInner changed");
_Static_assert(offsetof(struct AudioFrameInner, buffer) == 24, "AudioFrameInner.buffer moved");
_Static_assert(offsetof(struct AudioFrameInner, rtp_timestamp) == 60, "rtp_timestamp moved");
_Static_assert(sizeof(struct RTCConnInfoInner) == 40, "RTCConnInfoInner changed");
_Static_assert(sizeof(struct RTCConnectionObserverInner) == 248, "RTCConnectionObserverInner changed");
_Static_assert(offsetof(struct RTCConnectionObserverInner, on_user_joined) == 96, "on_user_joined moved");
_Static_assert(sizeof(struct RTCLocalUserObserverInner) == 296, "RTCLocalUserObserverInner changed");
_Static_assert(sizeof(struct AudioFrameObserverInner) == 80, "AudioFrameObserverInner changed");
_Static_assert(offsetof(struct AudioFrameObserverInner, on_playback_audio_frame_before_mixing) == 32,
               "before-mixing slot moved");
_Static_assert(sizeof(struct AgoraServiceConfigInner) == 88, "AgoraServiceConfigInner changed");
_Static_assert(offsetof(struct AgoraServiceConfigInner, app_id) == 24, "app_id moved");
_Static_assert(sizeof(struct RTCConnConfigInner) == 64, "RTCConnConfigInner changed");
_Static_assert(offsetof(struct RTCConnConfigInner, client_role_type) == 44, "client_role_type moved");

#define EXPORT __attribute__((visibility("default")))

enum { DISCONNECTED = 1, CONNECTING = 2, CONNECTED = 3, RECONNECTING = 4, FAILED = 5 };
enum { ROLE_BROADCASTER = 1, ROLE_AUDIENCE = 2 };
enum { AI_SERVER_SCENARIO = 9 };

#define MAGIC_SERVICE 0x53565331u
#define MAGIC_CONN 0x434f4e4eu
#define MAGIC_USER 0x55534552u
#define MAGIC_PARAM 0x50524d31u
#define MAGIC_FACTORY 0x46414354u
#define MAGIC_SENDER 0x534e4452u
#define MAGIC_TRACK 0x54524b31u
#define MAGIC_DEAD 0xdeaddeadu

#define INTERNAL __attribute__((visibility("hidden")))

/* ---------------------------------------------------------------- small helpers */


static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void deadline(struct timespec *ts, int64_t at_ns) {
    ts->tv_sec = at_ns / 1000000000;
    ts->tv_nsec = at_ns % 1000000000;
}

static inline char *dup_str(const char *s) { return strdup(s ? s : ""); }

/* A byte queue: the valid bytes are data[off, off + len); taking from the front is O(1). */
typedef struct {
    char *data;
    size_t off, len, cap;
} buf_t;

static inline void buf_add(buf_t *b, const void *data, size_t n) {
    if (b->off + b->len + n + 1 > b->cap) {
        if (b->off) {
            memmove(b->data, b->data + b->off, b->len);
            b->off = 0;
        }
        if (b->len + n + 1 > b->cap) {
            size_t cap = b->cap ? b->cap : 256;
            while (cap < b->len + n + 1) cap *= 2;
            b->data = realloc(b->data, cap);
            b->cap = cap;
        }
    }
    memcpy(b->data + b->off + b->len, data, n);
    b->len += n;
    b->data[b->off + b->len] = 0;
}

static inline const char *buf_front(const buf_t *b) { return b->data + b->off; }

#define BUF_LIT(b, literal) buf_add((b), (literal), sizeof(literal) - 1)

static inline void buf_printf(buf_t *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof tmp) n = sizeof tmp - 1;
    buf_add(b, tmp, (size_t)n);
}

static inline void buf_json_str(buf_t *b, const char *s) {
    buf_add(b, "\"", 1);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf_add(b, "\\", 1);
            buf_add(b, s, 1);
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else {
            buf_add(b, s, 1);
        }
    }
    buf_add(b, "\"", 1);
}

static inline void buf_drop_front(buf_t *b, size_t n) {
    if (n >= b->len) {
        b->len = b->off = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}

static inline void buf_free(buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

/* A small list of names with counts (calls, callbacks, violations). */
typedef struct {
    char name[96];
    long count;
} tally_t;
typedef struct {
    tally_t *items;
    int n, cap;
} tallies_t;

static inline void tally(tallies_t *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->items[i].name, name) == 0) {
            t->items[i].count++;
            return;
        }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 32;
        t->items = realloc(t->items, sizeof(tally_t) * t->cap);
    }
    snprintf(t->items[t->n].name, sizeof t->items[t->n].name, "%s", name);
    t->items[t->n].count = 1;
    t->n++;
}

static inline void tallies_json(buf_t *b, const tallies_t *t) {
    buf_add(b, "{", 1);
    for (int i = 0; i < t->n; i++) {
        if (i) buf_add(b, ",", 1);
        buf_json_str(b, t->items[i].name);
        buf_printf(b, ":%ld", t->items[i].count);
    }
    buf_add(b, "}", 1);
}

/* ---------------------------------------------------------------- the world */

typedef struct user {
    char uid[64];
    int host, muted;
    buf_t speech;      /* PCM16 queued to be said */
    long frames_spoken;
    long heard_by[8]; /* ids of the connections it is announced to (a fast check per tick) */
    struct user *next;
} user_t;

static inline void heard_by_add(user_t *u, long id) {
    for (int i = 0; i < 8; i++)
        if (u->heard_by[i] == id) return;
    for (int i = 0; i < 8; i++)
        if (!u->heard_by[i]) {
            u->heard_by[i] = id;
            return;
        }
}

static inline void heard_by_remove(user_t *u, long id) {
    for (int i = 0; i < 8; i++)
        if (u->heard_by[i] == id) u->heard_by[i] = 0;
}

static inline int is_heard_by(const user_t *u, long id) {
    for (int i = 0; i < 8; i++)
        if (u->heard_by[i] == id) return 1;
    return 0;
}

typedef struct channel {
    char name[128];
    user_t *users;
    struct channel *next;
} channel_t;

typedef struct object {
    unsigned magic;
    struct object *next_all; /* every object ever made, freed at reset */
} object_t;

struct conn;

typedef struct service {
    object_t obj;
    int initialized;
    char app_id[64];
} service_t;

typedef struct param {
    object_t obj;
} param_t;

typedef struct factory {
    object_t obj;
} factory_t;

typedef struct track {
    object_t obj;
    struct conn *conn; /* the connection being built when it was made */
    int enabled;
} track_t;

typedef struct sender {
    object_t obj;
    track_t *track;
} sender_t;

typedef struct local_user {
    object_t obj;
    struct conn *conn;
} local_user_t;

enum event_kind {
    EV_CONNECTING, EV_CONNECTED, EV_DISCONNECTED, EV_RECONNECTING, EV_RECONNECTED, EV_LOST,
    EV_FAILURE, EV_USER_JOINED, EV_USER_LEFT, EV_TOKEN_WILL_EXPIRE, EV_TOKEN_DID_EXPIRE,
    EV_ROLE_SUCCESS, EV_ROLE_FAILURE, EV_ERROR,
    EV_TRACK_SUBSCRIBED, EV_TRACK_STATE, EV_USER_INFO, EV_PUBLISH_STATE, EV_PUBLICATION_FAILURE,
    EV_PUBLISH_SUCCESS, EV_UNPUBLISHED, EV_FRAME_POSITION,
};

typedef struct event {
    enum event_kind kind;
    int a, b, c; /* state/reason/..., by kind */
    char *s;     /* uid, token or message */
    struct event *next;
} event_t;

enum { KIND_CONN = 1, KIND_USER = 2, KIND_FRAME = 3 };

typedef struct announced {
    char uid[64];
    char track_tag; /* its address is the remote track handle */
    struct announced *next;
} announced_t;

typedef struct conn {
    object_t obj;
    long id;
    service_t *service;
    local_user_t user;
    param_t param;
    int state, role, released, stopping;
    int auto_subscribe, subscribe_all;
    int frame_channels, frame_rate;
    int scenario, is_published, expiry_pending, renewed;
    char channel[128], local_uid[64], sid[64];
    char *token;
    track_t *published_track;
    buf_t pending; /* published PCM waiting for playout */
    int pending_rate, pending_channels;
    announced_t *announced;
    char **subscribed;
    int n_subscribed;
    /* observer tables, copied at registration */
    struct RTCConnectionObserverInner conn_obs;
    struct RTCLocalUserObserverInner user_obs;
    struct AudioFrameObserverInner frame_obs;
    int has_conn_obs, has_user_obs, has_frame_obs;
    int in_callback; /* KIND_* of the callback in flight, 0 if none */
    event_t *events, *events_tail;
    pthread_t thread;
    pid_t tid;
    int thread_started;
    pthread_cond_t wake;
    int64_t connected_ns;
    unsigned rtp;
    struct conn *next;
} conn_t;

typedef struct {
    object_t *all;
    channel_t *channels;
    conn_t *conns;
    conn_t *last_created;
    long next_conn_id;
    /* knobs */
    int64_t tick_ns;
    int idle_silence, join_failure, answer_joins, fail_connection_create;
    int invalid_channel_connect, renew_effective, audience_publish_error;
    int role_change_failure, extension_result, strict;
    char valid_app_ids[1024];
    int (*token_validator)(const char *token, const char *channel, const char *uid);
    /* observations */
    long frames_delivered, published_frames, rejected_bytes, rejected_pushes;
    long publish_rejected, calls_in_callback, unregister_waits, unanswered_joins, connects;
    long ticks;
    int64_t worst_lateness_ns;
    int64_t *lateness;
    long n_lateness, cap_lateness;
    buf_t published;
    tallies_t callbacks, calls, unmodelled, violations, in_callback_calls, rejected_reasons;
    char **renewed_tokens;
    int n_renewed;
    pid_t callback_tids[64];
    int n_callback_tids;
    int64_t connected_ns;
} world_t;

/* Shared state: one lock for everything, a condition signalled on every change. */
extern INTERNAL pthread_mutex_t g_mu;
extern INTERNAL pthread_cond_t g_changed;
extern INTERNAL unsigned long g_seq;
extern INTERNAL __thread int tls_in_callback;
extern INTERNAL world_t W;

#define ENTER(name)            \
    pthread_mutex_lock(&g_mu); \
    note_call_locked(name)
#define LEAVE() pthread_mutex_unlock(&g_mu)

INTERNAL void defaults(void);
INTERNAL void changed(void);
INTERNAL void *new_object(size_t size, unsigned magic);
INTERNAL void violation(const char *fmt, ...);
INTERNAL void note_call_locked(const char *name);
INTERNAL int check(void *handle, unsigned magic, const char *fn);
INTERNAL conn_t *conn_of(void *h, const char *fn);
INTERNAL conn_t *conn_of_user(void *h, const char *fn);
INTERNAL channel_t *channel_named(const char *name, int create);
INTERNAL user_t *user_named(channel_t *ch, const char *uid);
INTERNAL void post(conn_t *c, enum event_kind kind, int a, int b, int cc, const char *s);
INTERNAL int is_subscribed(conn_t *c, const char *uid);
INTERNAL announced_t *announced(conn_t *c, const char *uid);
INTERNAL void subscribed(conn_t *c, user_t *u);
INTERNAL void announce(conn_t *c, user_t *u);
INTERNAL void user_gone(conn_t *c, user_t *u, int reason);
INTERNAL void join(conn_t *c, int reason);
INTERNAL int live_in(conn_t *c, const char *channel);
INTERNAL void start_thread(conn_t *c);
INTERNAL void stop_thread(conn_t *c);
INTERNAL void unregister_kind(conn_t *c, int kind);
void standin_unmodelled(const char *name);

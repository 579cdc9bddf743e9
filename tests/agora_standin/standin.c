/*
 * A stand-in for Agora's native server library (libagora_rtc_sdk.so), for tests.
 *
 * The real Python wrapper of agora-python-server-sdk (unmodified) loads this
 * instead of Agora's library and drives it through ctypes. "standin_gen.h" is
 * generated from the wrapper's own ctypes objects (tests/agora_standin/generate.py):
 * every structure with its layout asserted against ctypes, every callback type
 * and the prototype of every bound function. build.py adds a weak stub for
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
#define _GNU_SOURCE
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

/* ---------------------------------------------------------------- small helpers */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_changed = PTHREAD_COND_INITIALIZER; /* any state change */
static unsigned long g_seq;                                 /* bumped with g_changed */
static __thread int tls_in_callback;                        /* this thread is inside a callback */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void deadline(struct timespec *ts, int64_t at_ns) {
    ts->tv_sec = at_ns / 1000000000;
    ts->tv_nsec = at_ns % 1000000000;
}

static char *dup_str(const char *s) { return strdup(s ? s : ""); }

/* A byte queue: the valid bytes are data[off, off + len); taking from the front is O(1). */
typedef struct {
    char *data;
    size_t off, len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *data, size_t n) {
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

static const char *buf_front(const buf_t *b) { return b->data + b->off; }

#define BUF_LIT(b, literal) buf_add((b), (literal), sizeof(literal) - 1)

static void buf_printf(buf_t *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof tmp) n = sizeof tmp - 1;
    buf_add(b, tmp, (size_t)n);
}

static void buf_json_str(buf_t *b, const char *s) {
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

static void buf_drop_front(buf_t *b, size_t n) {
    if (n >= b->len) {
        b->len = b->off = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}

static void buf_free(buf_t *b) {
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

static void tally(tallies_t *t, const char *name) {
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

static void tallies_json(buf_t *b, const tallies_t *t) {
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

static void heard_by_add(user_t *u, long id) {
    for (int i = 0; i < 8; i++)
        if (u->heard_by[i] == id) return;
    for (int i = 0; i < 8; i++)
        if (!u->heard_by[i]) {
            u->heard_by[i] = id;
            return;
        }
}

static void heard_by_remove(user_t *u, long id) {
    for (int i = 0; i < 8; i++)
        if (u->heard_by[i] == id) u->heard_by[i] = 0;
}

static int is_heard_by(const user_t *u, long id) {
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

static struct {
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
} W;

static void defaults(void) {
    W.tick_ns = 10 * 1000 * 1000;
    W.idle_silence = 0;
    W.join_failure = 0;
    W.answer_joins = 1;
    W.fail_connection_create = 0;
    W.invalid_channel_connect = 0;
    W.renew_effective = 1;
    W.audience_publish_error = 5;
    W.role_change_failure = 0;
    W.extension_result = -4; /* what the real library returned for the filter extension */
    W.strict = 1;
    W.valid_app_ids[0] = 0;
    W.token_validator = NULL;
}

static void changed(void) {
    g_seq++;
    pthread_cond_broadcast(&g_changed);
}

static void *new_object(size_t size, unsigned magic) {
    object_t *o = calloc(1, size);
    o->magic = magic;
    o->next_all = W.all;
    W.all = o;
    return o;
}

static void violation(const char *fmt, ...) {
    char tmp[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    tally(&W.violations, tmp);
}

/* Every SDK entry point notes itself: counted, and flagged if made from a callback. */
static void note_call_locked(const char *name) {
    tally(&W.calls, name);
    if (tls_in_callback) {
        W.calls_in_callback++;
        tally(&W.in_callback_calls, name);
    }
}

#define ENTER(name)            \
    pthread_mutex_lock(&g_mu); \
    note_call_locked(name)
#define LEAVE() pthread_mutex_unlock(&g_mu)

void standin_unmodelled(const char *name) {
    pthread_mutex_lock(&g_mu);
    note_call_locked(name);
    tally(&W.unmodelled, name);
    changed();
    pthread_mutex_unlock(&g_mu);
}

static int check(void *handle, unsigned magic, const char *fn) {
    object_t *o = handle;
    if (!o) {
        violation("%s: NULL handle", fn);
        return 0;
    }
    int known = 0;
    for (object_t *p = W.all; p && !known; p = p->next_all) known = p == o;
    for (conn_t *c = W.conns; c && !known; c = c->next) known = o == &c->user.obj;
    if (!known) {
        violation("%s: unknown handle", fn);
        return 0;
    }
    if (o->magic == magic) return 1;
    violation(o->magic == MAGIC_DEAD ? "%s: released handle" : "%s: wrong handle", fn);
    return 0;
}

static conn_t *conn_of(void *h, const char *fn) { return check(h, MAGIC_CONN, fn) ? h : NULL; }

static conn_t *conn_of_user(void *h, const char *fn) {
    if (!check(h, MAGIC_USER, fn)) return NULL;
    conn_t *c = ((local_user_t *)h)->conn;
    if (c->released) {
        violation("%s: local user of a released connection", fn);
        return NULL;
    }
    return c;
}

static channel_t *channel_named(const char *name, int create) {
    for (channel_t *ch = W.channels; ch; ch = ch->next)
        if (strcmp(ch->name, name) == 0) return ch;
    if (!create) return NULL;
    channel_t *ch = calloc(1, sizeof *ch);
    snprintf(ch->name, sizeof ch->name, "%s", name);
    channel_t **tail = &W.channels;
    while (*tail) tail = &(*tail)->next;
    *tail = ch;
    return ch;
}

static user_t *user_named(channel_t *ch, const char *uid) {
    for (user_t *u = ch ? ch->users : NULL; u; u = u->next)
        if (strcmp(u->uid, uid) == 0) return u;
    return NULL;
}

/* ---------------------------------------------------------------- events */

static void post(conn_t *c, enum event_kind kind, int a, int b, int cc, const char *s) {
    event_t *e = calloc(1, sizeof *e);
    e->kind = kind;
    e->a = a;
    e->b = b;
    e->c = cc;
    e->s = s ? strdup(s) : NULL;
    if (c->events_tail)
        c->events_tail->next = e;
    else
        c->events = e;
    c->events_tail = e;
    pthread_cond_signal(&c->wake);
}

static int is_subscribed(conn_t *c, const char *uid) {
    if (c->auto_subscribe || c->subscribe_all) return 1;
    for (int i = 0; i < c->n_subscribed; i++)
        if (strcmp(c->subscribed[i], uid) == 0) return 1;
    return 0;
}

static announced_t *announced(conn_t *c, const char *uid) {
    for (announced_t *a = c->announced; a; a = a->next)
        if (strcmp(a->uid, uid) == 0) return a;
    return NULL;
}

static void subscribed(conn_t *c, user_t *u) {
    post(c, EV_TRACK_SUBSCRIBED, 0, 0, 0, u->uid);
    if (u->muted)
        post(c, EV_TRACK_STATE, 0, 5, 0, u->uid);
    else
        post(c, EV_TRACK_STATE, 2, 0, 0, u->uid);
}

static void announce(conn_t *c, user_t *u) {
    if (announced(c, u->uid)) return;
    heard_by_add(u, c->id);
    announced_t *a = calloc(1, sizeof *a);
    snprintf(a->uid, sizeof a->uid, "%s", u->uid);
    a->next = c->announced;
    c->announced = a;
    post(c, EV_USER_JOINED, 0, 0, 0, u->uid);
    if (is_subscribed(c, u->uid)) subscribed(c, u);
}

static void user_gone(conn_t *c, user_t *u, int reason) {
    heard_by_remove(u, c->id);
    announced_t **p = &c->announced;
    while (*p && strcmp((*p)->uid, u->uid) != 0) p = &(*p)->next;
    if (!*p) return;
    announced_t *a = *p;
    *p = a->next;
    free(a);
    post(c, EV_TRACK_STATE, 0, 7, 0, u->uid);
    post(c, EV_USER_LEFT, reason, 0, 0, u->uid);
}

static void join(conn_t *c, int reason) {
    c->state = CONNECTED;
    c->connected_ns = W.connected_ns = now_ns();
    post(c, EV_CONNECTED, CONNECTED, reason, 0, NULL);
    channel_t *ch = channel_named(c->channel, 1);
    for (user_t *u = ch->users; u; u = u->next)
        if (u->host) announce(c, u);
}

static int live_in(conn_t *c, const char *channel) {
    return !c->released && c->state == CONNECTED && strcmp(c->channel, channel) == 0;
}

static void note_tid(pid_t tid) {
    for (int i = 0; i < W.n_callback_tids; i++)
        if (W.callback_tids[i] == tid) return;
    if (W.n_callback_tids < 64) W.callback_tids[W.n_callback_tids++] = tid;
}

/* Enter a callback of kind `kind`: returns 0 (and does nothing) if no observer. Under g_mu. */
static int begin_callback(conn_t *c, int kind, const char *name) {
    int has = kind == KIND_CONN ? c->has_conn_obs : kind == KIND_USER ? c->has_user_obs : c->has_frame_obs;
    if (!has) return 0;
    c->in_callback = kind;
    tally(&W.callbacks, name);
    note_tid(c->tid);
    pthread_mutex_unlock(&g_mu);
    tls_in_callback = 1;
    return 1;
}

static void end_callback(conn_t *c) {
    tls_in_callback = 0;
    pthread_mutex_lock(&g_mu);
    c->in_callback = 0;
    changed();
}

static void dispatch(conn_t *c, event_t *e) {
    /* Under g_mu; callbacks run with it released. */
    struct RTCConnInfoInner info = {
        .id = (unsigned long)c->id,
        .channel_id = c->channel,
        .state = e->a,
        .local_user_id = c->local_uid,
        .internal_uid = (unsigned)strtoul(c->local_uid, NULL, 10),
    };
    void *ch = c;
    void *lu = &c->user;
    char channel[128], s[256];
    snprintf(channel, sizeof channel, "%s", c->channel);
    snprintf(s, sizeof s, "%s", e->s ? e->s : "");
    announced_t *an = e->s ? announced(c, e->s) : NULL;
    void *remote_track = an ? (void *)&an->track_tag : (void *)c; /* any non-NULL handle */
    void *track = c->published_track;
    struct RTCConnectionObserverInner co = c->conn_obs;
    struct RTCLocalUserObserverInner uo = c->user_obs;
    struct AudioFrameObserverInner fo = c->frame_obs;
#define CONN_CB(slot, ...)                                                   \
    if (co.slot && begin_callback(c, KIND_CONN, #slot)) {                    \
        co.slot(__VA_ARGS__);                                                \
        end_callback(c);                                                     \
    }
#define USER_CB(slot, ...)                                                   \
    if (uo.slot && begin_callback(c, KIND_USER, #slot)) {                    \
        uo.slot(__VA_ARGS__);                                                \
        end_callback(c);                                                     \
    }
    switch (e->kind) {
    case EV_CONNECTING: CONN_CB(on_connecting, ch, &info, e->b); break;
    case EV_CONNECTED: CONN_CB(on_connected, ch, &info, e->b); break;
    case EV_DISCONNECTED: CONN_CB(on_disconnected, ch, &info, e->b); break;
    case EV_RECONNECTING: CONN_CB(on_reconnecting, ch, &info, e->b); break;
    case EV_RECONNECTED: CONN_CB(on_reconnected, ch, &info, e->b); break;
    case EV_LOST: CONN_CB(on_connection_lost, ch, &info); break;
    case EV_FAILURE: CONN_CB(on_connection_failure, ch, &info, e->b); break;
    case EV_USER_JOINED: CONN_CB(on_user_joined, ch, s); break;
    case EV_USER_LEFT: CONN_CB(on_user_left, ch, s, e->a); break;
    case EV_TOKEN_WILL_EXPIRE: CONN_CB(on_token_privilege_will_expire, ch, s); break;
    case EV_TOKEN_DID_EXPIRE: CONN_CB(on_token_privilege_did_expire, ch); break;
    case EV_ROLE_SUCCESS: CONN_CB(on_change_role_success, ch, e->a, e->b); break;
    case EV_ROLE_FAILURE: CONN_CB(on_change_role_failure, ch, e->a, e->b); break;
    case EV_ERROR: CONN_CB(on_error, ch, e->a, s); break;
    case EV_TRACK_SUBSCRIBED: USER_CB(on_user_audio_track_subscribed, lu, s, remote_track); break;
    case EV_TRACK_STATE: USER_CB(on_user_audio_track_state_changed, lu, s, remote_track, e->a, e->b, e->c); break;
    case EV_USER_INFO: USER_CB(on_user_info_updated, lu, s, e->a, e->b); break;
    case EV_PUBLISH_STATE: USER_CB(on_audio_publish_state_changed, lu, channel, e->a, e->b, e->c); break;
    case EV_PUBLICATION_FAILURE: USER_CB(on_audio_track_publication_failure, lu, track, e->a); break;
    case EV_PUBLISH_SUCCESS: USER_CB(on_audio_track_publish_success, lu, track); break;
    case EV_UNPUBLISHED: USER_CB(on_audio_track_unpublished, lu, track); break;
    case EV_FRAME_POSITION:
        if (fo.on_get_audio_frame_position && begin_callback(c, KIND_FRAME, "on_get_audio_frame_position")) {
            fo.on_get_audio_frame_position(lu);
            end_callback(c);
        }
        break;
    }
#undef CONN_CB
#undef USER_CB
}

/* ---------------------------------------------------------------- the native thread */

static int frame_bytes(conn_t *c) { return c->frame_rate / 100 * 2 * c->frame_channels; }

typedef struct {
    char uid[64];
    char *pcm;
} delivery_t;

static void tick(conn_t *c) {
    /* Under g_mu. Speech advances for every user of the channel while this connection
     * is in it (connected or not: audio said during an outage is lost). */
    channel_t *ch = c->channel[0] ? channel_named(c->channel, 0) : NULL;
    int fb = frame_bytes(c);
    int n = 0;
    for (user_t *u = ch ? ch->users : NULL; u; u = u->next) n++;
    delivery_t *out = n ? calloc((size_t)n, sizeof *out) : NULL;
    int k = 0;
    int alive = c->state == CONNECTED || c->state == RECONNECTING || c->state == FAILED || c->state == CONNECTING;
    for (user_t *u = ch && alive ? ch->users : NULL; u; u = u->next) {
        if (u->muted || !u->host) {
            u->speech.len = u->speech.off = 0; /* a muted or audience user is not heard */
            continue;
        }
        char *pcm = NULL;
        if (u->speech.len) {
            pcm = calloc(1, (size_t)fb);
            size_t take = u->speech.len < (size_t)fb ? u->speech.len : (size_t)fb;
            memcpy(pcm, buf_front(&u->speech), take);
            buf_drop_front(&u->speech, take);
            u->frames_spoken++;
        } else if (W.idle_silence) {
            pcm = calloc(1, (size_t)fb);
        }
        if (!pcm) continue;
        if (c->state == CONNECTED && is_heard_by(u, c->id) && is_subscribed(c, u->uid) && c->has_frame_obs) {
            snprintf(out[k].uid, sizeof out[k].uid, "%s", u->uid);
            out[k++].pcm = pcm;
        } else {
            free(pcm);
        }
    }
    /* Playout of the bot's published audio: 10 ms a tick. */
    if (c->pending.len && c->is_published && c->state == CONNECTED) {
        size_t size = (size_t)(c->pending_rate / 100 * 2 * c->pending_channels);
        if (size > c->pending.len) size = c->pending.len;
        buf_add(&W.published, buf_front(&c->pending), size);
        buf_drop_front(&c->pending, size);
        W.published_frames++;
    }
    for (int i = 0; i < k; i++) {
        if (!c->has_frame_obs || c->stopping) {
            free(out[i].pcm);
            continue;
        }
        ON_PLAYBACK_AUDIO_FRAME_BEFORE_MIXING_CALLBACK fn = c->frame_obs.on_playback_audio_frame_before_mixing;
        c->rtp += (unsigned)(c->frame_rate / 100);
        struct AudioFrameInner frame = {
            .type = 0,
            .samples_per_channel = c->frame_rate / 100,
            .bytes_per_sample = 2,
            .channels = c->frame_channels,
            .samples_per_sec = c->frame_rate,
            .buffer = out[i].pcm, /* valid only during the callback, as native buffers are */
            .render_time_ms = now_ns() / 1000000,
            .rtp_timestamp = c->rtp,
        };
        char channel[128];
        snprintf(channel, sizeof channel, "%s", c->channel);
        if (fn && begin_callback(c, KIND_FRAME, "on_playback_audio_frame_before_mixing")) {
            fn(&c->user, channel, out[i].uid, &frame);
            end_callback(c);
            W.frames_delivered++;
        }
        free(out[i].pcm);
    }
    free(out);
}

static void record_lateness(int64_t late) {
    if (late > W.worst_lateness_ns) W.worst_lateness_ns = late;
    if (W.n_lateness == W.cap_lateness) {
        W.cap_lateness = W.cap_lateness ? W.cap_lateness * 2 : 4096;
        W.lateness = realloc(W.lateness, sizeof(int64_t) * (size_t)W.cap_lateness);
    }
    W.lateness[W.n_lateness++] = late;
}

static void *run(void *arg) {
    conn_t *c = arg;
    pthread_mutex_lock(&g_mu);
    c->tid = (pid_t)syscall(SYS_gettid);
    int64_t next = now_ns();
    while (!c->stopping) {
        event_t *e = c->events;
        if (e) {
            c->events = e->next;
            if (!c->events) c->events_tail = NULL;
            dispatch(c, e);
            free(e->s);
            free(e);
            changed();
            continue;
        }
        int64_t now = now_ns();
        if (now >= next) {
            /* An absolute clock: a late tick is counted and caught up, never skipped. */
            record_lateness(now - next);
            W.ticks++;
            tick(c);
            next += W.tick_ns;
            changed();
            continue;
        }
        struct timespec ts;
        /* pthread_cond_timedwait uses CLOCK_REALTIME by default; convert. */
        struct timespec real;
        clock_gettime(CLOCK_REALTIME, &real);
        int64_t wait = next - now;
        int64_t at = (int64_t)real.tv_sec * 1000000000 + real.tv_nsec + wait;
        deadline(&ts, at);
        pthread_cond_timedwait(&c->wake, &g_mu, &ts);
    }
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

static void start_thread(conn_t *c) {
    if (c->thread_started) return;
    c->thread_started = 1;
    pthread_create(&c->thread, NULL, run, c);
}

/* Stop and join a connection's thread; under g_mu (released while joining). */
static void stop_thread(conn_t *c) {
    if (!c->thread_started) return;
    c->stopping = 1;
    pthread_cond_signal(&c->wake);
    if (pthread_equal(pthread_self(), c->thread)) {
        violation("connection destroyed from its own callback");
        pthread_detach(c->thread);
    } else {
        pthread_mutex_unlock(&g_mu);
        pthread_join(c->thread, NULL);
        pthread_mutex_lock(&g_mu);
    }
    c->thread_started = 0;
}

/* Drop an observer; wait for a callback of that kind in flight (unless it is ours). */
static void unregister_kind(conn_t *c, int kind) {
    if (kind == KIND_CONN) c->has_conn_obs = 0;
    if (kind == KIND_USER) c->has_user_obs = 0;
    if (kind == KIND_FRAME) c->has_frame_obs = 0;
    if (c->thread_started && pthread_equal(pthread_self(), c->thread)) return;
    if (c->in_callback == kind) {
        W.unregister_waits++;
        changed();
    }
    while (c->in_callback == kind) pthread_cond_wait(&g_changed, &g_mu);
}

/* ---------------------------------------------------------------- service */

EXPORT void *agora_service_create(void) {
    ENTER("agora_service_create");
    service_t *s = new_object(sizeof *s, MAGIC_SERVICE);
    LEAVE();
    return s;
}

static int app_id_valid(const char *app_id) {
    if (!app_id || !*app_id) return 0;
    if (!W.valid_app_ids[0]) return 1;
    char ids[1024];
    snprintf(ids, sizeof ids, "%s", W.valid_app_ids);
    for (char *save = NULL, *t = strtok_r(ids, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (strcmp(t, app_id) == 0) return 1;
    return 0;
}

EXPORT int agora_service_initialize(void *h, struct AgoraServiceConfigInner *config) {
    ENTER("agora_service_initialize");
    int result = -7;
    if (check(h, MAGIC_SERVICE, "agora_service_initialize") && config) {
        service_t *s = h;
        if (app_id_valid(config->app_id)) {
            snprintf(s->app_id, sizeof s->app_id, "%s", config->app_id);
            s->initialized = 1;
            result = 0;
        } else {
            result = -101; /* ERR_INVALID_APP_ID */
        }
    }
    LEAVE();
    return result;
}

EXPORT int agora_service_release(void *h) {
    ENTER("agora_service_release");
    if (check(h, MAGIC_SERVICE, "agora_service_release")) ((object_t *)h)->magic = MAGIC_DEAD;
    LEAVE();
    return 0;
}

EXPORT int agora_service_set_log_file(void *h, const char *path, unsigned int size) {
    (void)path, (void)size;
    ENTER("agora_service_set_log_file");
    int ok = check(h, MAGIC_SERVICE, "agora_service_set_log_file");
    LEAVE();
    return ok ? 0 : -7;
}

EXPORT int agora_service_set_log_filter(void *h, unsigned int filter) {
    (void)filter;
    ENTER("agora_service_set_log_filter");
    int ok = check(h, MAGIC_SERVICE, "agora_service_set_log_filter");
    LEAVE();
    return ok ? 0 : -7;
}

EXPORT void *agora_service_create_media_node_factory(void *h) {
    ENTER("agora_service_create_media_node_factory");
    void *f = check(h, MAGIC_SERVICE, "agora_service_create_media_node_factory") && ((service_t *)h)->initialized
                  ? new_object(sizeof(factory_t), MAGIC_FACTORY)
                  : NULL;
    LEAVE();
    return f;
}

EXPORT int agora_service_enable_extension(void *h, const char *provider, const char *extension, const char *track,
                                          unsigned int auto_enable) {
    (void)provider, (void)track, (void)auto_enable;
    ENTER("agora_service_enable_extension");
    int result = -7;
    if (check(h, MAGIC_SERVICE, "agora_service_enable_extension") && ((service_t *)h)->initialized)
        result = extension && strcmp(extension, "audio_processing_remote_playback") == 0 ? W.extension_result : 0;
    LEAVE();
    return result;
}

static param_t g_service_param = {{MAGIC_PARAM, NULL}};

EXPORT void *agora_service_get_agora_parameter(void *h) {
    ENTER("agora_service_get_agora_parameter");
    int ok = check(h, MAGIC_SERVICE, "agora_service_get_agora_parameter");
    LEAVE();
    return ok ? &g_service_param : NULL;
}

static int param_ok(void *h, const char *fn) {
    if (h == &g_service_param) return 1;
    for (conn_t *c = W.conns; c; c = c->next)
        if (h == &c->param) {
            if (c->released) violation("%s: parameter of a released connection", fn);
            return !c->released;
        }
    violation("%s: unknown parameter handle", fn);
    return 0;
}

EXPORT int agora_parameter_set_int(void *h, const char *key, int value) {
    (void)key, (void)value;
    ENTER("agora_parameter_set_int");
    int ok = param_ok(h, "agora_parameter_set_int");
    LEAVE();
    return ok ? 0 : -2;
}

EXPORT int agora_parameter_set_parameters(void *h, const char *json) {
    (void)json;
    ENTER("agora_parameter_set_parameters");
    int ok = param_ok(h, "agora_parameter_set_parameters");
    LEAVE();
    return ok ? 0 : -2;
}

/* The wrapper sets no restype here: ctypes' default, int. */
EXPORT int agora_media_node_factory_destroy(void *h) {
    ENTER("agora_media_node_factory_destroy");
    int ok = check(h, MAGIC_FACTORY, "agora_media_node_factory_destroy");
    if (ok) ((object_t *)h)->magic = MAGIC_DEAD;
    LEAVE();
    return ok ? 0 : -2;
}

EXPORT void *agora_media_node_factory_create_audio_pcm_data_sender(void *h) {
    ENTER("agora_media_node_factory_create_audio_pcm_data_sender");
    void *s = check(h, MAGIC_FACTORY, "agora_media_node_factory_create_audio_pcm_data_sender")
                  ? new_object(sizeof(sender_t), MAGIC_SENDER)
                  : NULL;
    LEAVE();
    return s;
}

EXPORT void agora_audio_pcm_data_sender_destroy(void *h) {
    ENTER("agora_audio_pcm_data_sender_destroy");
    if (check(h, MAGIC_SENDER, "agora_audio_pcm_data_sender_destroy")) ((object_t *)h)->magic = MAGIC_DEAD;
    LEAVE();
}

EXPORT void *agora_service_create_custom_audio_track_pcm(void *h, void *sender) {
    ENTER("agora_service_create_custom_audio_track_pcm");
    track_t *t = NULL;
    if (check(h, MAGIC_SERVICE, "agora_service_create_custom_audio_track_pcm") &&
        check(sender, MAGIC_SENDER, "agora_service_create_custom_audio_track_pcm")) {
        t = new_object(sizeof *t, MAGIC_TRACK);
        /* The wrapper makes a connection's track right after the connection. */
        t->conn = W.last_created;
        ((sender_t *)sender)->track = t;
    }
    LEAVE();
    return t;
}

EXPORT void agora_local_audio_track_destroy(void *h) {
    ENTER("agora_local_audio_track_destroy");
    if (check(h, MAGIC_TRACK, "agora_local_audio_track_destroy")) ((object_t *)h)->magic = MAGIC_DEAD;
    LEAVE();
}

EXPORT int agora_local_audio_track_set_enabled(void *h, int enabled) {
    ENTER("agora_local_audio_track_set_enabled");
    int ok = check(h, MAGIC_TRACK, "agora_local_audio_track_set_enabled");
    if (ok) ((track_t *)h)->enabled = enabled;
    LEAVE();
    return ok ? 0 : -2;
}

EXPORT void agora_local_audio_track_set_max_bufferd_frame_number(void *h, int n) {
    (void)n;
    ENTER("agora_local_audio_track_set_max_bufferd_frame_number");
    check(h, MAGIC_TRACK, "agora_local_audio_track_set_max_bufferd_frame_number");
    LEAVE();
}

EXPORT void agora_local_audio_track_set_send_delay_ms(void *h, int ms) {
    (void)ms;
    ENTER("agora_local_audio_track_set_send_delay_ms");
    check(h, MAGIC_TRACK, "agora_local_audio_track_set_send_delay_ms");
    LEAVE();
}

EXPORT int agora_local_audio_track_clear_sender_buffer(void *h) {
    ENTER("agora_local_audio_track_clear_sender_buffer");
    int ok = check(h, MAGIC_TRACK, "agora_local_audio_track_clear_sender_buffer");
    if (ok && ((track_t *)h)->conn) ((track_t *)h)->conn->pending.len = ((track_t *)h)->conn->pending.off = 0;
    if (ok) changed();
    LEAVE();
    return ok ? 0 : -2;
}

/* ---------------------------------------------------------------- connection */

static int channel_name_ok(const char *name) {
    static const char *allowed =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&()+-:;<=.>?@[]^_{}|~,";
    size_t n = strlen(name);
    if (n == 0 || n >= 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr(allowed, name[i])) return 0;
    return 1;
}

EXPORT void *agora_rtc_conn_create(void *h, struct RTCConnConfigInner *config) {
    ENTER("agora_rtc_conn_create");
    conn_t *c = NULL;
    if (check(h, MAGIC_SERVICE, "agora_rtc_conn_create") && config && !W.fail_connection_create) {
        c = new_object(sizeof *c, MAGIC_CONN);
        c->id = ++W.next_conn_id;
        c->service = h;
        c->user.obj.magic = MAGIC_USER;
        c->user.conn = c;
        c->param.obj.magic = MAGIC_PARAM;
        c->state = DISCONNECTED;
        c->role = config->client_role_type;
        c->auto_subscribe = config->auto_subscribe_audio;
        c->frame_channels = 1;
        c->frame_rate = 16000;
        snprintf(c->sid, sizeof c->sid, "standin-sid-%ld", c->id);
        pthread_cond_init(&c->wake, NULL);
        conn_t **tail = &W.conns;
        while (*tail) tail = &(*tail)->next;
        *tail = c;
        W.last_created = c;
        start_thread(c);
        changed();
    }
    LEAVE();
    return c;
}

EXPORT void *agora_rtc_conn_get_local_user(void *h) {
    ENTER("agora_rtc_conn_get_local_user");
    conn_t *c = conn_of(h, "agora_rtc_conn_get_local_user");
    LEAVE();
    return c ? &c->user : NULL;
}

EXPORT void *agora_rtc_conn_get_agora_parameter(void *h) {
    ENTER("agora_rtc_conn_get_agora_parameter");
    conn_t *c = conn_of(h, "agora_rtc_conn_get_agora_parameter");
    LEAVE();
    return c ? &c->param : NULL;
}

EXPORT int agora_rtc_conn_create_data_stream(void *h, int *stream_id, int reliable, int ordered) {
    (void)reliable, (void)ordered;
    ENTER("agora_rtc_conn_create_data_stream");
    conn_t *c = conn_of(h, "agora_rtc_conn_create_data_stream");
    if (c && stream_id) *stream_id = 1;
    LEAVE();
    return c ? 0 : -2;
}

EXPORT const char *agora_rtc_conn_get_sid(void *h) {
    ENTER("agora_rtc_conn_get_sid");
    conn_t *c = conn_of(h, "agora_rtc_conn_get_sid");
    LEAVE();
    return c ? c->sid : NULL;
}

EXPORT int agora_rtc_conn_register_observer(void *h, struct RTCConnectionObserverInner *observer) {
    ENTER("agora_rtc_conn_register_observer");
    conn_t *c = conn_of(h, "agora_rtc_conn_register_observer");
    if (c && observer) {
        c->conn_obs = *observer; /* copied: ctypes may free what it passed */
        c->has_conn_obs = 1;
    }
    LEAVE();
    return c && observer ? 0 : -2;
}

EXPORT int agora_rtc_conn_unregister_observer(void *h) {
    ENTER("agora_rtc_conn_unregister_observer");
    conn_t *c = conn_of(h, "agora_rtc_conn_unregister_observer");
    if (c) unregister_kind(c, KIND_CONN);
    LEAVE();
    return c ? 0 : -2;
}

EXPORT int agora_rtc_conn_connect(void *h, const char *token, const char *channel, const char *uid) {
    ENTER("agora_rtc_conn_connect");
    conn_t *c = conn_of(h, "agora_rtc_conn_connect");
    int result = 0;
    if (!c || !token || !channel || !uid) {
        result = -2;
    } else if (c->state != DISCONNECTED) {
        result = -8;
    } else {
        int valid = channel_name_ok(channel);
        if (!valid && W.invalid_channel_connect) {
            result = -2;
        } else {
            W.connects++;
            free(c->token);
            c->token = dup_str(token);
            snprintf(c->channel, sizeof c->channel, "%s", channel);
            snprintf(c->local_uid, sizeof c->local_uid, "%s", strcmp(uid, "0") == 0 ? "4096" : uid);
            c->state = CONNECTING;
            post(c, EV_CONNECTING, CONNECTING, 0, 0, NULL);
            int reason = valid ? W.join_failure : 7;
            if (!reason && W.token_validator) {
                int (*validate)(const char *, const char *, const char *) = W.token_validator;
                char local[64];
                snprintf(local, sizeof local, "%s", c->local_uid);
                /* The validator is test code (Python): call it without the lock. */
                pthread_mutex_unlock(&g_mu);
                reason = validate(token, channel, local);
                pthread_mutex_lock(&g_mu);
            }
            if (reason) {
                c->state = FAILED;
                post(c, EV_FAILURE, FAILED, reason, 0, NULL);
            } else if (W.answer_joins) {
                join(c, 1);
            } else {
                W.unanswered_joins++;
            }
            changed();
        }
    }
    LEAVE();
    return result;
}

EXPORT int agora_rtc_conn_disconnect(void *h) {
    ENTER("agora_rtc_conn_disconnect");
    conn_t *c = conn_of(h, "agora_rtc_conn_disconnect");
    if (c) {
        int was = c->state;
        c->state = DISCONNECTED;
        while (c->announced) {
            announced_t *a = c->announced;
            c->announced = a->next;
            free(a);
        }
        channel_t *ch = c->channel[0] ? channel_named(c->channel, 0) : NULL;
        for (user_t *u = ch ? ch->users : NULL; u; u = u->next) heard_by_remove(u, c->id);
        c->is_published = 0;
        c->pending.len = c->pending.off = 0;
        c->expiry_pending = 0;
        if (was != DISCONNECTED) post(c, EV_DISCONNECTED, DISCONNECTED, 5, 0, NULL);
        changed();
    }
    LEAVE();
    return c ? 0 : -2;
}

EXPORT void agora_rtc_conn_destroy(void *h) {
    ENTER("agora_rtc_conn_destroy");
    conn_t *c = conn_of(h, "agora_rtc_conn_destroy");
    if (c) {
        stop_thread(c);
        c->released = 1;
        c->has_conn_obs = c->has_user_obs = c->has_frame_obs = 0;
        while (c->events) {
            event_t *e = c->events;
            c->events = e->next;
            free(e->s);
            free(e);
        }
        c->events_tail = NULL;
        c->obj.magic = MAGIC_DEAD;
        c->user.obj.magic = MAGIC_DEAD;
        if (W.last_created == c) W.last_created = NULL;
        changed();
    }
    LEAVE();
}

EXPORT int agora_rtc_conn_renew_token(void *h, const char *token) {
    ENTER("agora_rtc_conn_renew_token");
    conn_t *c = conn_of(h, "agora_rtc_conn_renew_token");
    if (c && token) {
        W.renewed_tokens = realloc(W.renewed_tokens, sizeof(char *) * (size_t)(W.n_renewed + 1));
        W.renewed_tokens[W.n_renewed++] = dup_str(token);
        if (W.renew_effective) {
            free(c->token);
            c->token = dup_str(token);
            c->renewed = 1;
            if (c->state == FAILED) { /* renewing in FAILED connects again (reason 12) */
                c->state = CONNECTING;
                post(c, EV_CONNECTING, CONNECTING, 12, 0, NULL);
                join(c, 12);
            }
        }
        changed();
    }
    LEAVE();
    return c && token ? 0 : -2;
}

/* ---------------------------------------------------------------- local user */

EXPORT int agora_local_user_register_observer(void *h, struct RTCLocalUserObserverInner *observer) {
    ENTER("agora_local_user_register_observer");
    conn_t *c = conn_of_user(h, "agora_local_user_register_observer");
    if (c && observer) {
        c->user_obs = *observer;
        c->has_user_obs = 1;
    }
    LEAVE();
    return c && observer ? 0 : -2;
}

EXPORT int agora_local_user_unregister_observer(void *h) {
    ENTER("agora_local_user_unregister_observer");
    conn_t *c = conn_of_user(h, "agora_local_user_unregister_observer");
    if (c) unregister_kind(c, KIND_USER);
    LEAVE();
    return c ? 0 : -2;
}

EXPORT int agora_local_user_register_audio_frame_observer(void *h, struct AudioFrameObserverInner *observer) {
    ENTER("agora_local_user_register_audio_frame_observer");
    conn_t *c = conn_of_user(h, "agora_local_user_register_audio_frame_observer");
    if (c && observer) {
        c->frame_obs = *observer;
        c->has_frame_obs = 1;
        post(c, EV_FRAME_POSITION, 0, 0, 0, NULL);
    }
    LEAVE();
    return c && observer ? 0 : -2;
}

EXPORT int agora_local_user_unregister_audio_frame_observer(void *h) {
    ENTER("agora_local_user_unregister_audio_frame_observer");
    conn_t *c = conn_of_user(h, "agora_local_user_unregister_audio_frame_observer");
    if (c) unregister_kind(c, KIND_FRAME);
    LEAVE();
    return c ? 0 : -2;
}

EXPORT int agora_local_user_set_playback_audio_frame_before_mixing_parameters(void *h, int channels, int rate) {
    ENTER("agora_local_user_set_playback_audio_frame_before_mixing_parameters");
    conn_t *c = conn_of_user(h, "agora_local_user_set_playback_audio_frame_before_mixing_parameters");
    int ok = c && channels > 0 && channels <= 2 && rate >= 8000 && rate <= 48000 && rate % 100 == 0;
    if (ok) {
        c->frame_channels = channels;
        c->frame_rate = rate;
    }
    LEAVE();
    return ok ? 0 : -2;
}

EXPORT int agora_local_user_set_audio_scenario(void *h, int scenario) {
    ENTER("agora_local_user_set_audio_scenario");
    conn_t *c = conn_of_user(h, "agora_local_user_set_audio_scenario");
    if (c) c->scenario = scenario;
    LEAVE();
    return c ? 0 : -2;
}

EXPORT int agora_local_user_set_audio_encoder_config(void *h, struct AudioEncoderConfigurationInner *config) {
    ENTER("agora_local_user_set_audio_encoder_config");
    conn_t *c = conn_of_user(h, "agora_local_user_set_audio_encoder_config");
    LEAVE();
    return c && config ? 0 : -2;
}

EXPORT int agora_local_user_set_user_role(void *h, int role) {
    ENTER("agora_local_user_set_user_role");
    conn_t *c = conn_of_user(h, "agora_local_user_set_user_role");
    if (c) {
        int old = c->role;
        if (c->state == CONNECTED && W.role_change_failure) {
            post(c, EV_ROLE_FAILURE, W.role_change_failure, old, 0, NULL);
        } else {
            c->role = role;
            if (c->state == CONNECTED && old != role) post(c, EV_ROLE_SUCCESS, old, role, 0, NULL);
        }
        changed();
    }
    LEAVE();
    return c ? 0 : -2;
}

EXPORT int agora_local_user_get_user_role(void *h) {
    ENTER("agora_local_user_get_user_role");
    conn_t *c = conn_of_user(h, "agora_local_user_get_user_role");
    int role = c ? c->role : -2;
    LEAVE();
    return role;
}

static void subscribe(conn_t *c, const char *uid) {
    if (uid) {
        c->subscribed = realloc(c->subscribed, sizeof(char *) * (size_t)(c->n_subscribed + 1));
        c->subscribed[c->n_subscribed++] = dup_str(uid);
    } else {
        c->subscribe_all = 1;
    }
    channel_t *ch = c->channel[0] ? channel_named(c->channel, 0) : NULL;
    for (user_t *u = ch ? ch->users : NULL; u; u = u->next)
        if (c->state == CONNECTED && announced(c, u->uid) && (!uid || strcmp(uid, u->uid) == 0)) subscribed(c, u);
}

EXPORT int agora_local_user_subscribe_audio(void *h, const char *uid) {
    ENTER("agora_local_user_subscribe_audio");
    conn_t *c = conn_of_user(h, "agora_local_user_subscribe_audio");
    if (c && uid) subscribe(c, uid);
    LEAVE();
    return c && uid ? 0 : -2;
}

EXPORT int agora_local_user_subscribe_all_audio(void *h) {
    ENTER("agora_local_user_subscribe_all_audio");
    conn_t *c = conn_of_user(h, "agora_local_user_subscribe_all_audio");
    if (c) subscribe(c, NULL);
    LEAVE();
    return c ? 0 : -2;
}

EXPORT int agora_local_user_unsubscribe_all_audio(void *h) {
    ENTER("agora_local_user_unsubscribe_all_audio");
    conn_t *c = conn_of_user(h, "agora_local_user_unsubscribe_all_audio");
    if (c) {
        c->subscribe_all = c->auto_subscribe = 0;
        for (int i = 0; i < c->n_subscribed; i++) free(c->subscribed[i]);
        c->n_subscribed = 0;
    }
    LEAVE();
    return c ? 0 : -2;
}

EXPORT int agora_local_user_publish_audio(void *h, void *track) {
    ENTER("agora_local_user_publish_audio");
    conn_t *c = conn_of_user(h, "agora_local_user_publish_audio");
    int result = -2;
    if (c && check(track, MAGIC_TRACK, "agora_local_user_publish_audio")) {
        result = 0;
        c->published_track = track;
        ((track_t *)track)->conn = c;
        if (c->role == ROLE_AUDIENCE) {
            /* An audience cannot publish: rejected, reported asynchronously. */
            W.publish_rejected++;
            c->is_published = 0;
            post(c, EV_PUBLISH_STATE, 0, 1, 0, NULL);
            post(c, EV_PUBLICATION_FAILURE, W.audience_publish_error, 0, 0, NULL);
        } else if (!c->is_published) {
            c->is_published = 1;
            post(c, EV_PUBLISH_STATE, 1, 2, 0, NULL);
            post(c, EV_PUBLISH_STATE, 2, 3, 0, NULL);
            post(c, EV_PUBLISH_SUCCESS, 0, 0, 0, NULL);
        }
        changed();
    }
    LEAVE();
    return result;
}

EXPORT int agora_local_user_unpublish_audio(void *h, void *track) {
    ENTER("agora_local_user_unpublish_audio");
    conn_t *c = conn_of_user(h, "agora_local_user_unpublish_audio");
    int ok = c && check(track, MAGIC_TRACK, "agora_local_user_unpublish_audio");
    if (ok && c->is_published) {
        c->is_published = 0;
        post(c, EV_UNPUBLISHED, 0, 0, 0, NULL);
        post(c, EV_PUBLISH_STATE, 3, 1, 0, NULL);
        changed();
    }
    LEAVE();
    return ok ? 0 : -2;
}

static void reject(long n, const char *why) {
    W.rejected_bytes += n;
    W.rejected_pushes++;
    tally(&W.rejected_reasons, why);
}

EXPORT int agora_audio_pcm_data_sender_send(void *h, void *data, unsigned int capture_ts, long presentation_ms,
                                            unsigned int samples_per_channel, unsigned int bytes_per_sample,
                                            unsigned int channels, unsigned int rate) {
    (void)capture_ts, (void)presentation_ms;
    ENTER("agora_audio_pcm_data_sender_send");
    int result = -2;
    if (check(h, MAGIC_SENDER, "agora_audio_pcm_data_sender_send") && data) {
        long n = (long)samples_per_channel * bytes_per_sample * channels;
        track_t *t = ((sender_t *)h)->track;
        conn_t *c = t ? t->conn : NULL;
        result = 0;
        if (bytes_per_sample != 2 || channels < 1 || rate < 8000) {
            result = -200; /* ERR_PCMSEND_FORMAT */
        } else if (!c || c->released || c->state != CONNECTED) {
            reject(n, "not connected");
        } else if (c->role == ROLE_AUDIENCE) {
            reject(n, "audience");
        } else if (!c->is_published || c->published_track != t) {
            reject(n, "not published");
        } else {
            buf_add(&c->pending, data, (size_t)n); /* copied: the buffer is the caller's */
            c->pending_rate = (int)rate;
            c->pending_channels = (int)channels;
        }
        changed();
    }
    LEAVE();
    return result;
}

/* ---------------------------------------------------------------- test control */

EXPORT void standin_set_int(const char *key, long value) {
    pthread_mutex_lock(&g_mu);
    if (!strcmp(key, "tick_us")) W.tick_ns = value * 1000;
    else if (!strcmp(key, "idle_silence")) W.idle_silence = (int)value;
    else if (!strcmp(key, "join_failure")) W.join_failure = (int)value;
    else if (!strcmp(key, "answer_joins")) W.answer_joins = (int)value;
    else if (!strcmp(key, "fail_connection_create")) W.fail_connection_create = (int)value;
    else if (!strcmp(key, "invalid_channel_connect")) W.invalid_channel_connect = (int)value;
    else if (!strcmp(key, "renew_effective")) W.renew_effective = (int)value;
    else if (!strcmp(key, "audience_publish_error")) W.audience_publish_error = (int)value;
    else if (!strcmp(key, "role_change_failure")) W.role_change_failure = (int)value;
    else if (!strcmp(key, "extension_result")) W.extension_result = (int)value;
    else if (!strcmp(key, "strict")) W.strict = (int)value;
    else violation("standin_set_int: unknown key %s", key);
    changed();
    pthread_mutex_unlock(&g_mu);
}

EXPORT void standin_set_valid_app_ids(const char *csv) {
    pthread_mutex_lock(&g_mu);
    snprintf(W.valid_app_ids, sizeof W.valid_app_ids, "%s", csv ? csv : "");
    pthread_mutex_unlock(&g_mu);
}

EXPORT void standin_set_token_validator(int (*validator)(const char *, const char *, const char *)) {
    pthread_mutex_lock(&g_mu);
    W.token_validator = validator;
    pthread_mutex_unlock(&g_mu);
}

/* Participants. */
EXPORT int standin_user_add(const char *channel, const char *uid, int host, int muted) {
    pthread_mutex_lock(&g_mu);
    channel_t *ch = channel_named(channel, 1);
    int result = 0;
    if (user_named(ch, uid)) {
        result = -1;
    } else {
        user_t *u = calloc(1, sizeof *u);
        snprintf(u->uid, sizeof u->uid, "%s", uid);
        u->host = host;
        u->muted = muted;
        user_t **tail = &ch->users;
        while (*tail) tail = &(*tail)->next;
        *tail = u;
        for (conn_t *c = W.conns; c; c = c->next)
            if (host && live_in(c, channel)) announce(c, u);
    }
    changed();
    pthread_mutex_unlock(&g_mu);
    return result;
}

EXPORT int standin_user_remove(const char *channel, const char *uid, int reason) {
    pthread_mutex_lock(&g_mu);
    channel_t *ch = channel_named(channel, 0);
    user_t **p = ch ? &ch->users : NULL;
    while (p && *p && strcmp((*p)->uid, uid) != 0) p = &(*p)->next;
    int result = -1;
    if (p && *p) {
        user_t *u = *p;
        *p = u->next;
        if (u->host)
            for (conn_t *c = W.conns; c; c = c->next)
                if (live_in(c, channel)) user_gone(c, u, reason);
        buf_free(&u->speech);
        free(u);
        result = 0;
    }
    changed();
    pthread_mutex_unlock(&g_mu);
    return result;
}

EXPORT int standin_user_set_host(const char *channel, const char *uid, int host) {
    pthread_mutex_lock(&g_mu);
    user_t *u = user_named(channel_named(channel, 0), uid);
    if (u && u->host != host) {
        u->host = host;
        for (conn_t *c = W.conns; c; c = c->next)
            if (live_in(c, channel)) {
                if (host)
                    announce(c, u);
                else
                    user_gone(c, u, 2);
            }
    }
    changed();
    pthread_mutex_unlock(&g_mu);
    return u ? 0 : -1;
}

EXPORT int standin_user_mute(const char *channel, const char *uid, int muted) {
    pthread_mutex_lock(&g_mu);
    user_t *u = user_named(channel_named(channel, 0), uid);
    if (u && u->muted != muted) {
        u->muted = muted;
        if (u->host)
            for (conn_t *c = W.conns; c; c = c->next)
                if (live_in(c, channel)) {
                    if (muted) {
                        post(c, EV_TRACK_STATE, 0, 5, 0, uid);
                    } else {
                        post(c, EV_TRACK_STATE, 1, 6, 0, uid);
                        post(c, EV_TRACK_STATE, 2, 6, 0, uid);
                    }
                    post(c, EV_USER_INFO, 0, muted, 0, uid);
                }
    }
    changed();
    pthread_mutex_unlock(&g_mu);
    return u ? 0 : -1;
}

EXPORT int standin_user_speak(const char *channel, const char *uid, const void *pcm, size_t n) {
    pthread_mutex_lock(&g_mu);
    user_t *u = user_named(channel_named(channel, 0), uid);
    if (u) buf_add(&u->speech, pcm, n);
    changed();
    pthread_mutex_unlock(&g_mu);
    return u ? 0 : -1;
}

EXPORT long standin_user_frames_spoken(const char *channel, const char *uid) {
    pthread_mutex_lock(&g_mu);
    user_t *u = user_named(channel_named(channel, 0), uid);
    long n = u ? u->frames_spoken : -1;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* Connection trouble, for every live connection. */
EXPORT void standin_network(const char *what, int reason) {
    pthread_mutex_lock(&g_mu);
    for (conn_t *c = W.conns; c; c = c->next) {
        if (c->released) continue;
        if (!strcmp(what, "interrupt") && c->state == CONNECTED) {
            c->state = RECONNECTING;
            post(c, EV_RECONNECTING, RECONNECTING, reason, 0, NULL);
        } else if (!strcmp(what, "lost") && c->state == RECONNECTING) {
            post(c, EV_LOST, RECONNECTING, 0, 0, NULL);
        } else if (!strcmp(what, "restore") && c->state == RECONNECTING) {
            c->state = CONNECTED;
            post(c, EV_RECONNECTED, CONNECTED, 15, 0, NULL);
        } else if (!strcmp(what, "fail") && (c->state == CONNECTING || c->state == CONNECTED || c->state == RECONNECTING)) {
            c->state = FAILED;
            post(c, EV_FAILURE, FAILED, reason, 0, NULL);
        } else if (!strcmp(what, "token_will_expire") && c->state == CONNECTED) {
            c->expiry_pending = 1;
            c->renewed = 0;
            post(c, EV_TOKEN_WILL_EXPIRE, 0, 0, 0, c->token);
        } else if (!strcmp(what, "token_expires")) {
            int renewed = c->expiry_pending && c->renewed;
            c->expiry_pending = 0;
            if (renewed || (c->state != CONNECTED && c->state != RECONNECTING)) continue;
            c->state = FAILED;
            post(c, EV_TOKEN_DID_EXPIRE, 0, 0, 0, NULL);
            post(c, EV_FAILURE, FAILED, 9, 0, NULL);
        } else if (!strcmp(what, "error")) {
            post(c, EV_ERROR, reason, 0, 0, "stand-in error");
        }
    }
    changed();
    pthread_mutex_unlock(&g_mu);
}

static int idle_locked(void) {
    for (conn_t *c = W.conns; c; c = c->next) {
        if (c->released) continue;
        if (c->events || c->in_callback) return 0;
        if (c->pending.len && c->is_published && c->state == CONNECTED) return 0;
        channel_t *ch = c->channel[0] && c->state != DISCONNECTED ? channel_named(c->channel, 0) : NULL;
        for (user_t *u = ch ? ch->users : NULL; u; u = u->next)
            if (u->speech.len && u->host && !u->muted) return 0;
    }
    return 1;
}

static void abs_deadline(struct timespec *ts, long timeout_ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    int64_t at = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + (int64_t)timeout_ms * 1000000;
    deadline(ts, at);
}

/* Wait until every queued event, speech and published PCM has been delivered. */
EXPORT int standin_wait_idle(long timeout_ms) {
    struct timespec ts;
    abs_deadline(&ts, timeout_ms);
    pthread_mutex_lock(&g_mu);
    int rc = 0;
    while (!idle_locked() && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&g_changed, &g_mu, &ts);
    int idle = idle_locked();
    pthread_mutex_unlock(&g_mu);
    return idle;
}

/* Wait until something changes after `seq` (or the timeout); returns the current sequence. */
EXPORT unsigned long standin_wait_change(unsigned long seq, long timeout_ms) {
    struct timespec ts;
    abs_deadline(&ts, timeout_ms);
    pthread_mutex_lock(&g_mu);
    int rc = 0;
    while (g_seq == seq && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&g_changed, &g_mu, &ts);
    unsigned long now = g_seq;
    pthread_mutex_unlock(&g_mu);
    return now;
}

EXPORT size_t standin_published(void *out, size_t cap) {
    pthread_mutex_lock(&g_mu);
    size_t n = W.published.len;
    if (out && cap && n) memcpy(out, buf_front(&W.published), n < cap ? n : cap);
    pthread_mutex_unlock(&g_mu);
    return n;
}

EXPORT long standin_lateness(int64_t *out, long cap) {
    pthread_mutex_lock(&g_mu);
    long n = W.n_lateness;
    if (out && cap) memcpy(out, W.lateness, sizeof(int64_t) * (size_t)(n < cap ? n : cap));
    pthread_mutex_unlock(&g_mu);
    return n;
}

EXPORT void standin_clear_problems(void) {
    pthread_mutex_lock(&g_mu);
    W.unmodelled.n = 0;
    W.violations.n = 0;
    pthread_mutex_unlock(&g_mu);
}

EXPORT void standin_clear_lateness(void) {
    pthread_mutex_lock(&g_mu);
    W.n_lateness = 0;
    W.worst_lateness_ns = 0;
    pthread_mutex_unlock(&g_mu);
}

static const char *state_name(int s) {
    switch (s) {
    case DISCONNECTED: return "disconnected";
    case CONNECTING: return "connecting";
    case CONNECTED: return "connected";
    case RECONNECTING: return "reconnecting";
    case FAILED: return "failed";
    }
    return "?";
}

/* Everything observable, as JSON; returns the length (copy truncated to cap). */
EXPORT size_t standin_stats(char *out, size_t cap) {
    buf_t b = {0};
    pthread_mutex_lock(&g_mu);
    buf_printf(&b, "{\"seq\":%lu,\"frames_delivered\":%ld,\"published_frames\":%ld,", g_seq, W.frames_delivered,
               W.published_frames);
    buf_printf(&b, "\"published_bytes\":%zu,\"rejected_bytes\":%ld,\"rejected_pushes\":%ld,", W.published.len,
               W.rejected_bytes, W.rejected_pushes);
    buf_printf(&b, "\"publish_rejected\":%ld,\"calls_in_callback\":%ld,\"unregister_waits\":%ld,", W.publish_rejected,
               W.calls_in_callback, W.unregister_waits);
    buf_printf(&b, "\"unanswered_joins\":%ld,\"connects\":%ld,\"ticks\":%ld,\"worst_lateness_ns\":%lld,",
               W.unanswered_joins, W.connects, W.ticks, (long long)W.worst_lateness_ns);
    buf_printf(&b, "\"connected_ns\":%lld,\"idle\":%d,\"strict\":%d,", (long long)W.connected_ns, idle_locked(),
               W.strict);
    BUF_LIT(&b, "\"callbacks\":");
    tallies_json(&b, &W.callbacks);
    BUF_LIT(&b, ",\"calls\":");
    tallies_json(&b, &W.calls);
    BUF_LIT(&b, ",\"unmodelled\":");
    tallies_json(&b, &W.unmodelled);
    BUF_LIT(&b, ",\"violations\":");
    tallies_json(&b, &W.violations);
    BUF_LIT(&b, ",\"in_callback_calls\":");
    tallies_json(&b, &W.in_callback_calls);
    BUF_LIT(&b, ",\"rejected_reasons\":");
    tallies_json(&b, &W.rejected_reasons);
    BUF_LIT(&b, ",\"callback_tids\":[");
    for (int i = 0; i < W.n_callback_tids; i++) buf_printf(&b, "%s%d", i ? "," : "", W.callback_tids[i]);
    BUF_LIT(&b, "],\"renewed_tokens\":[");
    for (int i = 0; i < W.n_renewed; i++) {
        if (i) BUF_LIT(&b, ",");
        buf_json_str(&b, W.renewed_tokens[i]);
    }
    BUF_LIT(&b, "],\"connections\":[");
    int first = 1;
    for (conn_t *c = W.conns; c; c = c->next) {
        int has_track = 0;
        for (object_t *o = W.all; o; o = o->next_all)
            if (o->magic == MAGIC_TRACK && ((track_t *)o)->conn == c) has_track = 1;
        buf_printf(&b, "%s{\"id\":%ld,\"state\":%d,\"state_name\":\"%s\",\"role\":%d,\"released\":%d,", first ? "" : ",",
                   c->id, c->state, state_name(c->state), c->role, c->released);
        first = 0;
        buf_printf(&b, "\"auto_subscribe\":%d,\"frame_channels\":%d,\"frame_rate\":%d,\"scenario\":%d,",
                   c->auto_subscribe, c->frame_channels, c->frame_rate, c->scenario);
        buf_printf(&b, "\"has_track\":%d,\"is_published\":%d,\"tid\":%d,\"thread_running\":%d,", has_track,
                   c->is_published, c->tid, c->thread_started);
        buf_printf(&b, "\"observers\":[%d,%d,%d],\"channel\":", c->has_conn_obs, c->has_user_obs, c->has_frame_obs);
        buf_json_str(&b, c->channel);
        BUF_LIT(&b, ",\"local_uid\":");
        buf_json_str(&b, c->local_uid);
        BUF_LIT(&b, ",\"sid\":");
        buf_json_str(&b, c->sid);
        BUF_LIT(&b, ",\"token\":");
        buf_json_str(&b, c->token ? c->token : "");
        BUF_LIT(&b, "}");
    }
    BUF_LIT(&b, "]}");
    pthread_mutex_unlock(&g_mu);
    size_t n = b.len;
    if (out && cap) {
        size_t m = n < cap - 1 ? n : cap - 1;
        memcpy(out, buf_front(&b), m);
        out[m] = 0;
    }
    buf_free(&b);
    return n;
}

/* Forget everything: stop and join every connection thread, drop every object.
 * C globals outlive Python module purges (dlopen of one path is shared). */
EXPORT void standin_reset(void) {
    pthread_mutex_lock(&g_mu);
    for (conn_t *c = W.conns; c; c = c->next) stop_thread(c);
    for (conn_t *c = W.conns; c; c = c->next) {
        while (c->events) {
            event_t *e = c->events;
            c->events = e->next;
            free(e->s);
            free(e);
        }
        while (c->announced) {
            announced_t *a = c->announced;
            c->announced = a->next;
            free(a);
        }
        for (int i = 0; i < c->n_subscribed; i++) free(c->subscribed[i]);
        free(c->subscribed);
        free(c->token);
        buf_free(&c->pending);
        pthread_cond_destroy(&c->wake);
    }
    /* Every object, connections included, was made by new_object. */
    for (object_t *o = W.all; o;) {
        object_t *next = o->next_all;
        free(o);
        o = next;
    }
    W.all = NULL;
    W.conns = NULL;
    W.last_created = NULL;
    for (channel_t *ch = W.channels; ch;) {
        for (user_t *u = ch->users; u;) {
            user_t *n = u->next;
            buf_free(&u->speech);
            free(u);
            u = n;
        }
        channel_t *n = ch->next;
        free(ch);
        ch = n;
    }
    W.channels = NULL;
    for (int i = 0; i < W.n_renewed; i++) free(W.renewed_tokens[i]);
    free(W.renewed_tokens);
    W.renewed_tokens = NULL;
    W.n_renewed = 0;
    free(W.lateness);
    W.lateness = NULL;
    W.n_lateness = W.cap_lateness = 0;
    buf_free(&W.published);
    tallies_t *ts[] = {&W.callbacks, &W.calls, &W.unmodelled, &W.violations, &W.in_callback_calls, &W.rejected_reasons};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) {
        free(ts[i]->items);
        ts[i]->items = NULL;
        ts[i]->n = ts[i]->cap = 0;
    }
    W.frames_delivered = W.published_frames = W.rejected_bytes = W.rejected_pushes = 0;
    W.publish_rejected = W.calls_in_callback = W.unregister_waits = W.unanswered_joins = W.connects = W.ticks = 0;
    W.worst_lateness_ns = 0;
    W.n_callback_tids = 0;
    W.connected_ns = 0;
    W.next_conn_id = 0;
    defaults();
    changed();
    pthread_mutex_unlock(&g_mu);
}

__attribute__((constructor)) static void standin_init(void) { defaults(); }

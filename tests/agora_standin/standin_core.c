/* The stand-in's world: objects, participants, events and the native thread per connection. */
#include "standin.h"

INTERNAL pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
INTERNAL pthread_cond_t g_changed = PTHREAD_COND_INITIALIZER; /* any state change */
INTERNAL unsigned long g_seq;                                 /* bumped with g_changed */
INTERNAL __thread int tls_in_callback;                        /* this thread is inside a callback */
INTERNAL world_t W;

INTERNAL void defaults(void) {
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

INTERNAL void changed(void) {
    g_seq++;
    pthread_cond_broadcast(&g_changed);
}

INTERNAL void *new_object(size_t size, unsigned magic) {
    object_t *o = calloc(1, size);
    o->magic = magic;
    o->next_all = W.all;
    W.all = o;
    return o;
}

INTERNAL void violation(const char *fmt, ...) {
    char tmp[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    tally(&W.violations, tmp);
}

/* Every SDK entry point notes itself: counted, and flagged if made from a callback. */
INTERNAL void note_call_locked(const char *name) {
    tally(&W.calls, name);
    if (tls_in_callback) {
        W.calls_in_callback++;
        tally(&W.in_callback_calls, name);
    }
}


void standin_unmodelled(const char *name) {
    pthread_mutex_lock(&g_mu);
    note_call_locked(name);
    tally(&W.unmodelled, name);
    changed();
    pthread_mutex_unlock(&g_mu);
}

INTERNAL int check(void *handle, unsigned magic, const char *fn) {
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

INTERNAL conn_t *conn_of(void *h, const char *fn) { return check(h, MAGIC_CONN, fn) ? h : NULL; }

INTERNAL conn_t *conn_of_user(void *h, const char *fn) {
    if (!check(h, MAGIC_USER, fn)) return NULL;
    conn_t *c = ((local_user_t *)h)->conn;
    if (c->released) {
        violation("%s: local user of a released connection", fn);
        return NULL;
    }
    return c;
}

INTERNAL channel_t *channel_named(const char *name, int create) {
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

INTERNAL user_t *user_named(channel_t *ch, const char *uid) {
    for (user_t *u = ch ? ch->users : NULL; u; u = u->next)
        if (strcmp(u->uid, uid) == 0) return u;
    return NULL;
}

/* ---------------------------------------------------------------- events */

INTERNAL void post(conn_t *c, enum event_kind kind, int a, int b, int cc, const char *s) {
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

INTERNAL int is_subscribed(conn_t *c, const char *uid) {
    if (c->auto_subscribe || c->subscribe_all) return 1;
    for (int i = 0; i < c->n_subscribed; i++)
        if (strcmp(c->subscribed[i], uid) == 0) return 1;
    return 0;
}

INTERNAL announced_t *announced(conn_t *c, const char *uid) {
    for (announced_t *a = c->announced; a; a = a->next)
        if (strcmp(a->uid, uid) == 0) return a;
    return NULL;
}

INTERNAL void subscribed(conn_t *c, user_t *u) {
    post(c, EV_TRACK_SUBSCRIBED, 0, 0, 0, u->uid);
    if (u->muted)
        post(c, EV_TRACK_STATE, 0, 5, 0, u->uid);
    else
        post(c, EV_TRACK_STATE, 2, 0, 0, u->uid);
}

INTERNAL void announce(conn_t *c, user_t *u) {
    if (announced(c, u->uid)) return;
    heard_by_add(u, c->id);
    announced_t *a = calloc(1, sizeof *a);
    snprintf(a->uid, sizeof a->uid, "%s", u->uid);
    a->next = c->announced;
    c->announced = a;
    post(c, EV_USER_JOINED, 0, 0, 0, u->uid);
    if (is_subscribed(c, u->uid)) subscribed(c, u);
}

INTERNAL void user_gone(conn_t *c, user_t *u, int reason) {
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

INTERNAL void join(conn_t *c, int reason) {
    c->state = CONNECTED;
    c->connected_ns = W.connected_ns = now_ns();
    post(c, EV_CONNECTED, CONNECTED, reason, 0, NULL);
    channel_t *ch = channel_named(c->channel, 1);
    for (user_t *u = ch->users; u; u = u->next)
        if (u->host) announce(c, u);
}

INTERNAL int live_in(conn_t *c, const char *channel) {
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

INTERNAL void start_thread(conn_t *c) {
    if (c->thread_started) return;
    c->thread_started = 1;
    pthread_create(&c->thread, NULL, run, c);
}

/* Stop and join a connection's thread; under g_mu (released while joining). */
INTERNAL void stop_thread(conn_t *c) {
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
INTERNAL void unregister_kind(conn_t *c, int kind) {
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

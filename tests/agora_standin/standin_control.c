/* The test-control exports (standin_*), called by tests through ctypes. */
#include "standin.h"

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

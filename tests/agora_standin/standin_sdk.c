/* The SDK's entry points the recorder's transport calls, modelled (the rest are stubs). */
#include "standin.h"

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

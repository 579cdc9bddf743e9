/* The native audio tap: Agora's before-mixing frames gathered into chunks in C.
 *
 * An optional speed-up (docs/providers.md, "Agora: the native tap"). The Agora
 * wrapper's raw binding agora_local_user_register_audio_frame_observer takes any
 * observer table; the table here points its before-mixing slot at a C function,
 * so the SDK's native thread delivers each 10 ms frame without Python and
 * without the GIL. The function copies the frame into that participant's
 * buffer; whole chunks (the same staggered boundaries and timestamps as
 * recorder.audio.ChunkAssembler) go into one ordered queue with the
 * participant events Python hands in (push_event), and the first item of an
 * empty queue writes an eventfd (a pipe off Linux) the event loop watches.
 * collect() hands every ready item over in one call.
 *
 * Locks: g_registry guards which taps are attached; each tap's mu guards its
 * state. The frame callback holds g_registry to find its tap and try mu; with
 * mu it works under mu. When mu is held (by a loop thread, which the OS may
 * preempt there for milliseconds) the callback does not wait: it copies the
 * frame onto the tap's lock-free list of deferred frames, still under
 * g_registry, and returns. Whoever takes mu next takes the deferred frames in
 * first, in order, and again before letting mu go (lock_tap, unlock_tap). Past
 * max_deferred_ms of deferred audio the callback waits for mu, as it once
 * always did, and that wait is counted. detach() removes the tap from the
 * registry and then takes and releases mu: once it returns no callback is
 * inside the tap and none can enter. Nothing here takes the GIL while
 * holding mu except the Python methods, which never wait for the GIL inside.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

/* The wrapper's ctypes layouts (agora-python-server-sdk 2.4.10; docs/providers.md,
 * "Agora: the native tap"): AudioFrameInner 88 B with buffer at 24, the observer
 * table 10 function pointers with before-mixing at slot 4. */
struct AudioFrameInner {
    int type;
    int samples_per_channel;
    int bytes_per_sample;
    int channels;
    int samples_per_sec;
    void *buffer;
    long render_time_ms;
    int avsync_type;
    long presentation_ms;
    int audio_track_number;
    unsigned int rtp_timestamp;
    int far_field_flag;
    int rms;
    int voice_prob;
    int music_prob;
    int pitch;
};

struct AudioFrameObserverInner {
    int (*on_record_audio_frame)(void *, const char *, struct AudioFrameInner *);
    int (*on_playback_audio_frame)(void *, const char *, struct AudioFrameInner *);
    int (*on_mixed_audio_frame)(void *, const char *, struct AudioFrameInner *);
    int (*on_ear_monitoring_audio_frame)(void *, struct AudioFrameInner *);
    int (*on_playback_audio_frame_before_mixing)(void *, const char *, const char *,
                                                 struct AudioFrameInner *);
    int (*on_get_audio_frame_position)(void *);
    void *on_get_playback_audio_frame_param;
    void *on_get_record_audio_frame_param;
    void *on_get_mixed_audio_frame_param;
    void *on_get_ear_monitoring_audio_frame_param;
};

#if defined(__x86_64__) || defined(__aarch64__)
_Static_assert(sizeof(struct AudioFrameInner) == 88, "AudioFrameInner layout");
_Static_assert(offsetof(struct AudioFrameInner, buffer) == 24, "AudioFrameInner.buffer");
_Static_assert(sizeof(struct AudioFrameObserverInner) == 80, "observer table layout");
_Static_assert(offsetof(struct AudioFrameObserverInner, on_playback_audio_frame_before_mixing) == 32,
               "before-mixing slot");
#endif

#define BYTES_PER_MS 32.0     /* PCM16 mono 16 kHz, as recorder.audio */
#define GAP_TOLERANCE_MS 200.0 /* recorder.audio._GAP_TOLERANCE_MS */
#define CONTIGUOUS_MS 0.5      /* chunks this close follow one another (bridge._CONTIGUOUS_MS) */
#define MAX_FRAME_BYTES (48000 / 100 * 2 * 2)
#define MAX_TAPS 16

typedef struct item {
    struct item *next;
    uint64_t uid;
    double start_ms;
    char *pcm; /* NULL for an event */
    size_t len;
    int is_speech;
    PyObject *event;
} item_t;

typedef struct {
    uint64_t uid;
    int used;
    char *buf;
    size_t len, cap;
    size_t next_bytes;
    double start_ms;
    int has_start;
    double heard_ms;
    int heard;
    size_t queued_bytes;
    double dropped_ms;
    int dropping;             /* a stretch dropped since the loop last looked: */
    double drop_from_ms, drop_to_ms; /* [from, to) on the transport's clock */
} part_t;

typedef struct {
    uint64_t uid;
    double from_ms, to_ms;
} run_t;

/* A frame the callback could not add because mu was held: added by mu's next holder. */
typedef struct deferred {
    struct deferred *next;
    uint64_t uid;
    double arrival_ms;
    size_t size;
    char pcm[];
} deferred_t;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    void *handle;
    int attached;
    int64_t origin_ns;
    double rate;
    int chunk_ms;
    size_t chunk_bytes;
    size_t max_queued_bytes;
    double speech_power; /* mean square at the speech threshold */
    part_t *parts;
    size_t nparts, cap;
    item_t *head, *tail;
    size_t nitems, most_items;
    int wake_pending;
    int rfd, wfd;
    unsigned long long frames, chunks, wakeups, dropped_chunks, bad_frames, collects;
    int64_t most_lock_wait_ns;
    unsigned long long deferred_frames; /* taken in from the deferred list (under mu) */
    _Atomic(deferred_t *) deferred;      /* newest first: pushed lock-free by callbacks */
    atomic_size_t deferred_bytes;
    size_t max_deferred_bytes;
    run_t *closed; /* stretches dropped and closed since drop_runs last looked */
    size_t nclosed, capclosed;
    PyObject *chunk_type;
} Tap;

static pthread_mutex_t g_registry = PTHREAD_MUTEX_INITIALIZER;
static Tap *g_taps[MAX_TAPS];
static int g_ntaps;
static atomic_ullong g_unmatched; /* frames for no attached tap; read without g_registry */

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint32_t crc32_le(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static size_t bytes_for_ms(double ms) { return (size_t)llround(ms * 16.0) * 2; }

/* -- per-participant state (an open-addressing table; under mu) ------------------ */

static size_t slot_of(uint64_t uid, size_t cap) {
    uint64_t h = uid * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 17) & (cap - 1);
}

static part_t *find_part(Tap *t, uint64_t uid) {
    if (!t->cap) return NULL;
    for (size_t i = slot_of(uid, t->cap);; i = (i + 1) & (t->cap - 1)) {
        part_t *p = &t->parts[i];
        if (!p->used) return NULL;
        if (p->uid == uid) return p;
    }
}

static int grow(Tap *t) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    part_t *parts = calloc(cap, sizeof *parts);
    if (!parts) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        part_t *old = &t->parts[i];
        if (!old->used) continue;
        size_t j = slot_of(old->uid, cap);
        while (parts[j].used) j = (j + 1) & (cap - 1);
        parts[j] = *old;
    }
    free(t->parts);
    t->parts = parts;
    t->cap = cap;
    return 0;
}

static part_t *get_part(Tap *t, uint64_t uid) {
    part_t *p = find_part(t, uid);
    if (p) return p;
    if ((t->nparts + 1) * 2 > t->cap && grow(t) != 0) return NULL;
    size_t i = slot_of(uid, t->cap);
    while (t->parts[i].used) i = (i + 1) & (t->cap - 1);
    p = &t->parts[i];
    memset(p, 0, sizeof *p);
    p->used = 1;
    p->uid = uid;
    /* Staggered first chunk, as AudioBridge: 50-100% of a chunk, from the uid. */
    unsigned char le[8];
    for (int k = 0; k < 8; k++) le[k] = (unsigned char)(uid >> (8 * k));
    int half = t->chunk_ms / 2;
    int first = half + (int)(crc32_le(le, 8) % (uint32_t)(half + 1));
    p->next_bytes = bytes_for_ms(first < 50 ? 50 : first);
    t->nparts++;
    return p;
}

/* -- the ordered queue (under mu) ------------------------------------------------ */

static void wake(Tap *t) {
    if (t->wake_pending) return;
    t->wake_pending = 1;
    t->wakeups++;
#ifdef __linux__
    uint64_t one = 1;
    ssize_t r = write(t->wfd, &one, sizeof one);
#else
    char one = 1;
    ssize_t r = write(t->wfd, &one, 1);
#endif
    (void)r; /* a full pipe already wakes the loop */
}

static void push_item(Tap *t, item_t *it) {
    it->next = NULL;
    if (t->tail) t->tail->next = it;
    else t->head = it;
    t->tail = it;
    if (++t->nitems > t->most_items) t->most_items = t->nitems;
    wake(t);
}

/* p's stretch dropped so far is closed (audio was admitted after it): kept for drop_runs. */
static void close_run(Tap *t, part_t *p) {
    if (t->nclosed == t->capclosed) {
        size_t cap = t->capclosed ? t->capclosed * 2 : 16;
        run_t *runs = realloc(t->closed, cap * sizeof *runs);
        if (!runs) return; /* out of memory: the stretch stays open and grows over the gap */
        t->closed = runs;
        t->capclosed = cap;
    }
    t->closed[t->nclosed++] = (run_t){p->uid, p->drop_from_ms, p->drop_to_ms};
    p->dropping = 0;
}

/* p's gathered audio is dropped (the queue is full): counted, and its stretch noted. */
static void drop(Tap *t, part_t *p, double start, double duration) {
    t->dropped_chunks++;
    p->dropped_ms += duration;
    p->len = 0;
    if (p->dropping && fabs(start - p->drop_to_ms) >= CONTIGUOUS_MS) close_run(t, p);
    if (!p->dropping) {
        p->dropping = 1;
        p->drop_from_ms = start;
    }
    p->drop_to_ms = start + duration;
}

/* Whatever p has gathered becomes a chunk (admitted or dropped, counted). */
static void take(Tap *t, part_t *p) {
    if (!p->len || !p->has_start) return;
    size_t len = p->len;
    double duration = (double)len / BYTES_PER_MS;
    double start = p->start_ms;
    p->start_ms += duration;
    t->chunks++;
    if (p->queued_bytes + len > t->max_queued_bytes) {
        drop(t, p, start, duration);
        return;
    }
    item_t *it = malloc(sizeof *it);
    if (!it) {
        drop(t, p, start, duration);
        return;
    }
    const int16_t *s = (const int16_t *)p->buf;
    size_t n = len / 2;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (double)s[i] * (double)s[i];
    it->is_speech = n && sum > 0.0 && sum / (double)n >= t->speech_power;
    it->uid = p->uid;
    it->start_ms = start;
    it->pcm = p->buf;
    it->len = len;
    it->event = NULL;
    p->buf = NULL;
    p->len = p->cap = 0;
    p->queued_bytes += len;
    push_item(t, it);
}

static void flush(Tap *t, part_t *p) {
    take(t, p);
    p->len = 0;
    p->has_start = 0;
}

static void add_frame(Tap *t, uint64_t uid, const char *pcm, size_t size, double arrival) {
    part_t *p = get_part(t, uid);
    if (!p) {
        t->bad_frames++;
        return;
    }
    t->frames++;
    p->heard_ms = arrival;
    p->heard = 1;
    double start = arrival - (double)size / BYTES_PER_MS;
    if (!p->has_start) {
        p->start_ms = start;
        p->has_start = 1;
    } else if (fabs(start - p->start_ms - (double)p->len / BYTES_PER_MS) > GAP_TOLERANCE_MS) {
        take(t, p);
        p->start_ms = start;
    }
    if (p->len + size > p->cap) {
        size_t cap = t->chunk_bytes + MAX_FRAME_BYTES;
        while (cap < p->len + size) cap *= 2;
        char *buf = realloc(p->buf, cap);
        if (!buf) {
            t->bad_frames++;
            return;
        }
        p->buf = buf;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, pcm, size);
    p->len += size;
    if (p->len >= p->next_bytes) {
        p->next_bytes = t->chunk_bytes;
        take(t, p);
    }
}

static double clock_ms_at(Tap *t, int64_t ns) { return (double)(ns - t->origin_ns) / 1e6 * t->rate; }

/* -- deferred frames: the audio thread never waits for a loop thread ---------------- */

/* On the callback's thread, under g_registry (so detach waits for it): 0 if the
 * frame is on the list, -1 if the list is full (or no memory) and the caller must
 * wait for mu instead. */
static int defer(Tap *t, uint64_t uid, const char *pcm, size_t size, double arrival_ms) {
    if (atomic_fetch_add(&t->deferred_bytes, size) + size > t->max_deferred_bytes) {
        atomic_fetch_sub(&t->deferred_bytes, size);
        return -1;
    }
    deferred_t *d = malloc(sizeof *d + size);
    if (!d) {
        atomic_fetch_sub(&t->deferred_bytes, size);
        return -1;
    }
    d->uid = uid;
    d->arrival_ms = arrival_ms;
    d->size = size;
    memcpy(d->pcm, pcm, size);
    d->next = atomic_load(&t->deferred);
    while (!atomic_compare_exchange_weak(&t->deferred, &d->next, d)) {
    }
    return 0;
}

/* Under mu: add the deferred frames, oldest first (each callback thread's own order). */
static void take_deferred(Tap *t) {
    deferred_t *d = atomic_exchange(&t->deferred, NULL);
    if (!d) return;
    deferred_t *oldest = NULL;
    while (d) {
        deferred_t *next = d->next;
        d->next = oldest;
        oldest = d;
        d = next;
    }
    size_t bytes = 0;
    while (oldest) {
        deferred_t *next = oldest->next;
        add_frame(t, oldest->uid, oldest->pcm, oldest->size, oldest->arrival_ms);
        bytes += oldest->size;
        t->deferred_frames++;
        free(oldest);
        oldest = next;
    }
    atomic_fetch_sub(&t->deferred_bytes, bytes);
}

/* mu, for everything but the callback: deferred frames go in on taking it (they came
 * before what the holder does) and on letting it go (they came while it was held). */
static void lock_tap(Tap *t) {
    pthread_mutex_lock(&t->mu);
    take_deferred(t);
}

static void unlock_tap(Tap *t) {
    take_deferred(t);
    pthread_mutex_unlock(&t->mu);
}

/* -- the observer table the SDK calls ------------------------------------------- */

static int ignore_frame(void *lu, const char *channel, struct AudioFrameInner *frame) {
    (void)lu, (void)channel, (void)frame;
    return 1;
}

static int ignore_ear_frame(void *lu, struct AudioFrameInner *frame) {
    (void)lu, (void)frame;
    return 1;
}

static int frame_position(void *lu) {
    (void)lu;
    return 1; /* the wrapper's IAudioFrameObserver default */
}

static int before_mixing(void *lu, const char *channel, const char *uid,
                         struct AudioFrameInner *frame) {
    (void)channel;
    int64_t now = mono_ns();
    long size = frame ? (long)frame->samples_per_channel * frame->bytes_per_sample * frame->channels : 0;
    char *end = NULL;
    unsigned long long number = uid && *uid ? strtoull(uid, &end, 10) : 0;
    int bad = !frame || !frame->buffer || size <= 0 || size > MAX_FRAME_BYTES || !end || *end;
    pthread_mutex_lock(&g_registry);
    Tap *t = NULL;
    for (int i = 0; i < g_ntaps; i++)
        if (g_taps[i]->handle == lu) t = g_taps[i];
    if (!t && g_ntaps == 1) t = g_taps[0]; /* a handle the SDK spells differently */
    if (!t) {
        g_unmatched++;
        pthread_mutex_unlock(&g_registry);
        return 1;
    }
    double arrival_ms = clock_ms_at(t, now); /* origin and rate: set under g_registry too */
    if (pthread_mutex_trylock(&t->mu) != 0) {
        /* A loop thread holds mu: defer the frame rather than wait for it. */
        if (!bad && defer(t, (uint64_t)number, frame->buffer, (size_t)size, arrival_ms) == 0) {
            pthread_mutex_unlock(&g_registry);
            return 1;
        }
        /* The list is full: Agora's audio thread waits (timed only here: from the
         * callback's start it would count this thread's own preemptions). */
        int64_t asked = mono_ns();
        pthread_mutex_lock(&t->mu);
        int64_t waited = mono_ns() - asked;
        if (waited > t->most_lock_wait_ns) t->most_lock_wait_ns = waited;
    }
    pthread_mutex_unlock(&g_registry);
    take_deferred(t); /* they came before this frame */
    if (bad) t->bad_frames++;
    else add_frame(t, (uint64_t)number, frame->buffer, (size_t)size, arrival_ms);
    unlock_tap(t);
    return 1;
}

static struct AudioFrameObserverInner g_table = {
    .on_record_audio_frame = ignore_frame,
    .on_playback_audio_frame = ignore_frame,
    .on_mixed_audio_frame = ignore_frame,
    .on_ear_monitoring_audio_frame = ignore_ear_frame,
    .on_playback_audio_frame_before_mixing = before_mixing,
    .on_get_audio_frame_position = frame_position,
};

/* -- the Python type ------------------------------------------------------------- */

static void drop_items(item_t *it) {
    while (it) {
        item_t *next = it->next;
        free(it->pcm);
        Py_XDECREF(it->event);
        free(it);
        it = next;
    }
}

static void do_detach(Tap *t) {
    pthread_mutex_lock(&g_registry);
    for (int i = 0; i < g_ntaps; i++) {
        if (g_taps[i] == t) {
            g_taps[i] = g_taps[--g_ntaps];
            break;
        }
    }
    t->attached = 0;
    pthread_mutex_unlock(&g_registry);
    /* A callback deferring a frame held g_registry; one inside the tap holds mu until
     * it leaves: wait it out (and take in what was deferred). */
    lock_tap(t);
    unlock_tap(t);
}

static int Tap_init(Tap *t, PyObject *args, PyObject *kw) {
    static char *names[] = {"chunk_type", "origin_s", "rate", "chunk_ms", "max_queued_ms",
                            "speech_dbfs", "max_deferred_ms", NULL};
    PyObject *chunk_type;
    double origin_s, rate = 1.0, max_queued_ms = 5000.0, speech_dbfs = -50.0;
    double max_deferred_ms = 120000.0; /* 3.8 MB: 240 ms of 500 speakers' frames */
    int chunk_ms = 100;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Od|diddd", names, &chunk_type, &origin_s, &rate,
                                     &chunk_ms, &max_queued_ms, &speech_dbfs, &max_deferred_ms))
        return -1;
    if (t->chunk_type) {
        PyErr_SetString(PyExc_RuntimeError, "Tap is already initialised");
        return -1;
    }
    if (chunk_ms < 50 || chunk_ms > 1000 || !(rate > 0) || !(max_queued_ms > 0) ||
        !(max_deferred_ms >= 0) || !isfinite(origin_s)) {
        PyErr_SetString(PyExc_ValueError,
                        "chunk_ms 50-1000, rate and max_queued_ms positive, max_deferred_ms >= 0");
        return -1;
    }
    Py_INCREF(chunk_type);
    t->chunk_type = chunk_type;
    t->origin_ns = (int64_t)llround(origin_s * 1e9);
    t->rate = rate;
    t->chunk_ms = chunk_ms;
    t->chunk_bytes = bytes_for_ms(chunk_ms);
    t->max_queued_bytes = bytes_for_ms(max_queued_ms);
    t->max_deferred_bytes = bytes_for_ms(max_deferred_ms);
    t->speech_power = 32768.0 * 32768.0 * pow(10.0, speech_dbfs / 10.0);
#ifdef __linux__
    t->rfd = t->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->rfd < 0) return PyErr_SetFromErrno(PyExc_OSError), -1;
#else
    int fds[2];
    if (pipe(fds) != 0) return PyErr_SetFromErrno(PyExc_OSError), -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    t->rfd = fds[0];
    t->wfd = fds[1];
#endif
    return 0;
}

static PyObject *Tap_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    (void)args, (void)kw;
    Tap *t = (Tap *)type->tp_alloc(type, 0);
    if (!t) return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->rfd = t->wfd = -1;
    return (PyObject *)t;
}

static void Tap_dealloc(Tap *t) {
    if (t->attached) do_detach(t);
    drop_items(t->head);
    for (deferred_t *d = atomic_load(&t->deferred), *next; d; d = next) {
        next = d->next;
        free(d);
    }
    for (size_t i = 0; i < t->cap; i++) free(t->parts[i].buf);
    free(t->parts);
    free(t->closed);
    if (t->rfd >= 0) close(t->rfd);
    if (t->wfd >= 0 && t->wfd != t->rfd) close(t->wfd);
    Py_XDECREF(t->chunk_type);
    pthread_mutex_destroy(&t->mu);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static int ready(Tap *t) {
    if (!t->chunk_type) {
        PyErr_SetString(PyExc_RuntimeError, "Tap is not initialised");
        return 0;
    }
    return 1;
}

static PyObject *Tap_attach(Tap *t, PyObject *arg) {
    if (!ready(t)) return NULL;
    void *handle = PyLong_AsVoidPtr(arg);
    if (PyErr_Occurred()) return NULL;
    pthread_mutex_lock(&g_registry);
    if (t->attached || g_ntaps == MAX_TAPS) {
        pthread_mutex_unlock(&g_registry);
        PyErr_SetString(PyExc_RuntimeError, "tap already attached, or too many taps");
        return NULL;
    }
    lock_tap(t);
    t->handle = handle;
    unlock_tap(t);
    g_taps[g_ntaps++] = t;
    t->attached = 1;
    pthread_mutex_unlock(&g_registry);
    Py_RETURN_NONE;
}

static PyObject *Tap_detach(Tap *t, PyObject *unused) {
    (void)unused;
    if (t->attached) {
        Py_BEGIN_ALLOW_THREADS do_detach(t);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static int uid_arg(PyObject *arg, uint64_t *uid) {
    *uid = (uint64_t)PyLong_AsUnsignedLongLong(arg);
    return !PyErr_Occurred();
}

static PyObject *Tap_push_event(Tap *t, PyObject *args) {
    PyObject *event, *flush_uid = Py_None;
    if (!ready(t) || !PyArg_ParseTuple(args, "O|O", &event, &flush_uid)) return NULL;
    uint64_t uid = 0;
    if (flush_uid != Py_None && !uid_arg(flush_uid, &uid)) return NULL;
    item_t *it = calloc(1, sizeof *it);
    if (!it) return PyErr_NoMemory();
    Py_INCREF(event);
    it->event = event;
    lock_tap(t);
    if (flush_uid != Py_None) {
        part_t *p = find_part(t, uid);
        if (p) flush(t, p);
    }
    push_item(t, it);
    unlock_tap(t);
    Py_RETURN_NONE;
}

static PyObject *Tap_end_audio(Tap *t, PyObject *arg) {
    uint64_t uid;
    if (!ready(t) || !uid_arg(arg, &uid)) return NULL;
    lock_tap(t);
    part_t *p = find_part(t, uid);
    if (p) flush(t, p);
    unlock_tap(t);
    Py_RETURN_NONE;
}

static PyObject *Tap_push_frame(Tap *t, PyObject *args) {
    /* Tests and the fallback comparison: one frame as the SDK would deliver it. */
    unsigned long long uid;
    Py_buffer pcm;
    double at_ms;
    if (!ready(t) || !PyArg_ParseTuple(args, "Ky*d", &uid, &pcm, &at_ms)) return NULL;
    if (pcm.len <= 0 || pcm.len > MAX_FRAME_BYTES) {
        PyBuffer_Release(&pcm);
        PyErr_SetString(PyExc_ValueError, "a frame is 1 to 1920 bytes");
        return NULL;
    }
    lock_tap(t);
    add_frame(t, (uint64_t)uid, pcm.buf, (size_t)pcm.len, at_ms);
    unlock_tap(t);
    PyBuffer_Release(&pcm);
    Py_RETURN_NONE;
}

static PyObject *Tap_stale(Tap *t, PyObject *args) {
    /* For gap filling: if uid was last heard (or since_ms, if later) at least after_ms
     * before now_ms, flush its partial chunk and return when it was last heard. */
    unsigned long long uid;
    double now_ms, after_ms, since_ms;
    if (!ready(t) || !PyArg_ParseTuple(args, "Kddd", &uid, &now_ms, &after_ms, &since_ms))
        return NULL;
    lock_tap(t);
    part_t *p = find_part(t, (uint64_t)uid);
    double heard = p && p->heard && p->heard_ms > since_ms ? p->heard_ms : since_ms;
    int is_stale = now_ms - heard >= after_ms;
    if (is_stale && p) flush(t, p);
    unlock_tap(t);
    if (!is_stale) Py_RETURN_NONE;
    return PyFloat_FromDouble(heard);
}

static PyObject *Tap_hear(Tap *t, PyObject *args) {
    unsigned long long uid;
    double at_ms;
    if (!ready(t) || !PyArg_ParseTuple(args, "Kd", &uid, &at_ms)) return NULL;
    lock_tap(t);
    part_t *p = get_part(t, (uint64_t)uid);
    if (p && (!p->heard || p->heard_ms < at_ms)) {
        p->heard_ms = at_ms;
        p->heard = 1;
    }
    unlock_tap(t);
    Py_RETURN_NONE;
}

static PyObject *Tap_set_clock(Tap *t, PyObject *args) {
    double origin_s, rate;
    if (!ready(t) || !PyArg_ParseTuple(args, "dd", &origin_s, &rate)) return NULL;
    if (!isfinite(origin_s) || !(rate > 0)) {
        PyErr_SetString(PyExc_ValueError, "origin_s must be finite and rate positive");
        return NULL;
    }
    pthread_mutex_lock(&g_registry); /* the callback reads the clock under g_registry */
    lock_tap(t);
    t->origin_ns = (int64_t)llround(origin_s * 1e9);
    t->rate = rate;
    unlock_tap(t);
    pthread_mutex_unlock(&g_registry);
    Py_RETURN_NONE;
}

static PyObject *Tap_collect(Tap *t, PyObject *unused) {
    (void)unused;
    if (!ready(t)) return NULL;
    /* Drained before locking: the lock is held as briefly as it can be (the frames that
     * find it held are deferred, and wait for it to be let go). A wake written between
     * the drain and the lock only costs one empty collect. */
#ifdef __linux__
    uint64_t count;
    while (read(t->rfd, &count, sizeof count) > 0) {
    }
#else
    char sink[256];
    while (read(t->rfd, sink, sizeof sink) > 0) {
    }
#endif
    lock_tap(t);
    item_t *it = t->head;
    t->head = t->tail = NULL;
    size_t n = t->nitems;
    t->nitems = 0;
    t->wake_pending = 0;
    t->collects++;
    for (item_t *i = it; i; i = i->next) {
        if (!i->pcm) continue;
        part_t *p = find_part(t, i->uid);
        if (p) p->queued_bytes -= i->len < p->queued_bytes ? i->len : p->queued_bytes;
    }
    unlock_tap(t);
    PyObject *out = PyList_New((Py_ssize_t)n);
    if (!out) {
        drop_items(it);
        return NULL;
    }
    Py_ssize_t k = 0;
    while (it) {
        item_t *next = it->next;
        PyObject *value;
        if (it->pcm) {
            PyObject *chunk = PyObject_CallFunction(t->chunk_type, "y#dO", it->pcm,
                                                    (Py_ssize_t)it->len, it->start_ms,
                                                    it->is_speech ? Py_True : Py_False);
            value = chunk ? Py_BuildValue("(KN)", (unsigned long long)it->uid, chunk) : NULL;
            free(it->pcm);
        } else {
            value = it->event; /* the reference moves to the list */
        }
        free(it);
        it = next;
        if (!value) {
            drop_items(it);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k++, value);
    }
    return out;
}

static PyObject *Tap_hold(Tap *t, PyObject *arg) {
    /* Tests: hold the tap as a frame callback in flight would, for `seconds`. */
    double seconds = PyFloat_AsDouble(arg);
    if (PyErr_Occurred()) return NULL;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    Py_BEGIN_ALLOW_THREADS lock_tap(t);
    nanosleep(&ts, NULL);
    unlock_tap(t);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *Tap_fileno(Tap *t, PyObject *unused) {
    (void)unused;
    if (!ready(t)) return NULL;
    return PyLong_FromLong(t->rfd);
}

static PyObject *Tap_stats(Tap *t, PyObject *unused) {
    (void)unused;
    lock_tap(t);
    unsigned long long v[] = {t->frames, t->chunks, t->wakeups, t->dropped_chunks, t->bad_frames,
                              t->collects, t->nitems, t->most_items, t->nparts,
                              (unsigned long long)t->most_lock_wait_ns, t->deferred_frames};
    unlock_tap(t);
    unsigned long long unmatched = atomic_load(&g_unmatched);
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsKsK}", "frames", v[0], "chunks", v[1],
                         "wakeups", v[2], "dropped_chunks", v[3], "bad_frames", v[4], "collects",
                         v[5], "queued_items", v[6], "most_queued_items", v[7], "participants",
                         v[8], "most_lock_wait_ns", v[9], "deferred_frames", v[10],
                         "unmatched_frames", unmatched);
}

static PyObject *Tap_dropped_ms(Tap *t, PyObject *unused) {
    (void)unused;
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    lock_tap(t);
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++) n += t->parts[i].used && t->parts[i].dropped_ms > 0;
    uint64_t *uids = n ? malloc(n * sizeof *uids) : NULL;
    double *ms = n ? malloc(n * sizeof *ms) : NULL;
    size_t k = 0;
    if (uids && ms) {
        for (size_t i = 0; i < t->cap; i++) {
            if (t->parts[i].used && t->parts[i].dropped_ms > 0) {
                uids[k] = t->parts[i].uid;
                ms[k++] = t->parts[i].dropped_ms;
            }
        }
    }
    unlock_tap(t);
    for (size_t i = 0; i < k; i++) {
        PyObject *key = PyLong_FromUnsignedLongLong(uids[i]);
        PyObject *value = PyFloat_FromDouble(ms[i]);
        if (!key || !value || PyDict_SetItem(out, key, value) != 0) {
            Py_XDECREF(key);
            Py_XDECREF(value);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(key);
        Py_DECREF(value);
    }
    free(uids);
    free(ms);
    if (n && k != n && out) return PyErr_NoMemory();
    return out;
}

/* The stretches dropped since the last call: [(uid, from_ms, to_ms)], each reported once. */
static PyObject *Tap_drop_runs(Tap *t, PyObject *unused) {
    (void)unused;
    lock_tap(t);
    size_t n = t->nclosed;
    for (size_t i = 0; i < t->cap; i++) n += t->parts[i].used && t->parts[i].dropping;
    run_t *runs = n ? malloc(n * sizeof *runs) : NULL;
    size_t k = 0;
    if (runs) {
        for (; k < t->nclosed; k++) runs[k] = t->closed[k];
        t->nclosed = 0;
        for (size_t i = 0; i < t->cap; i++) {
            part_t *p = &t->parts[i];
            if (p->used && p->dropping) {
                runs[k].uid = p->uid;
                runs[k].from_ms = p->drop_from_ms;
                runs[k++].to_ms = p->drop_to_ms;
                p->dropping = 0;
            }
        }
    }
    unlock_tap(t);
    if (n && !runs) return PyErr_NoMemory(); /* the stretches stay noted for the next call */
    PyObject *out = PyList_New((Py_ssize_t)k);
    for (size_t i = 0; out && i < k; i++) {
        PyObject *run = Py_BuildValue("(Kdd)", (unsigned long long)runs[i].uid, runs[i].from_ms,
                                      runs[i].to_ms);
        if (!run) Py_CLEAR(out);
        else PyList_SET_ITEM(out, (Py_ssize_t)i, run);
    }
    free(runs);
    return out;
}

static PyObject *Tap_get_attached(Tap *t, void *closure) {
    (void)closure;
    return PyBool_FromLong(t->attached);
}

static PyObject *Tap_get_dropped_chunks(Tap *t, void *closure) {
    /* Read at every collect: one counter, not stats()' dict. */
    (void)closure;
    lock_tap(t);
    unsigned long long n = t->dropped_chunks;
    unlock_tap(t);
    return PyLong_FromUnsignedLongLong(n);
}

static PyMethodDef Tap_methods[] = {
    {"attach", (PyCFunction)Tap_attach, METH_O,
     "attach(handle): take frames whose local-user handle is `handle` (before registering)."},
    {"detach", (PyCFunction)Tap_detach, METH_NOARGS,
     "detach(): take no more frames; returns once no callback is inside the tap."},
    {"push_event", (PyCFunction)Tap_push_event, METH_VARARGS,
     "push_event(event, flush_uid=None): queue an event in order, after flushing flush_uid."},
    {"end_audio", (PyCFunction)Tap_end_audio, METH_O,
     "end_audio(uid): queue what uid has gathered; its next frame starts a new run."},
    {"push_frame", (PyCFunction)Tap_push_frame, METH_VARARGS,
     "push_frame(uid, pcm, at_ms): add one frame as the SDK callback would (tests)."},
    {"stale", (PyCFunction)Tap_stale, METH_VARARGS,
     "stale(uid, now_ms, after_ms, since_ms): last heard if silent that long (flushing), else None."},
    {"set_clock", (PyCFunction)Tap_set_clock, METH_VARARGS,
     "set_clock(origin_s, rate): frames are stamped (monotonic - origin_s) * 1000 * rate ms."},
    {"hear", (PyCFunction)Tap_hear, METH_VARARGS, "hear(uid, at_ms): count uid as heard at at_ms."},
    {"collect", (PyCFunction)Tap_collect, METH_NOARGS,
     "collect(): every ready (uid, Chunk) and event, in order; re-arms the wake-up."},
    {"_hold", (PyCFunction)Tap_hold, METH_O,
     "_hold(seconds): tests; hold the tap as a callback in flight would."},
    {"fileno", (PyCFunction)Tap_fileno, METH_NOARGS, "The descriptor readable when items wait."},
    {"stats", (PyCFunction)Tap_stats, METH_NOARGS, "Counters, as a dict."},
    {"drop_runs", (PyCFunction)Tap_drop_runs, METH_NOARGS,
     "The stretches dropped since the last call: [(uid, from_ms, to_ms)]."},
    {"dropped_ms", (PyCFunction)Tap_dropped_ms, METH_NOARGS,
     "Audio dropped because the queue was full, ms per uid."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Tap_getset[] = {
    {"attached", (getter)Tap_get_attached, NULL, "Whether frames are being taken.", NULL},
    {"dropped_chunks", (getter)Tap_get_dropped_chunks, NULL,
     "Chunks dropped because the queue was full (as stats()).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TapType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "recorder.transport.agora._tap.Tap",
    .tp_basicsize = sizeof(Tap),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Tap(chunk_type, origin_s, rate=1.0, chunk_ms=100, max_queued_ms=5000.0, "
              "speech_dbfs=-50.0, max_deferred_ms=120000.0): one connection's frames, "
              "gathered in C.",
    .tp_new = Tap_new,
    .tp_init = (initproc)Tap_init,
    .tp_dealloc = (destructor)Tap_dealloc,
    .tp_methods = Tap_methods,
    .tp_getset = Tap_getset,
};

static PyObject *table_address(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    return PyLong_FromVoidPtr(&g_table);
}

static PyMethodDef module_methods[] = {
    {"table_address", table_address, METH_NOARGS,
     "Address of the AudioFrameObserverInner table whose before-mixing slot is the tap."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tap", "The native audio tap (docs/providers.md).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__tap(void) {
    if (PyType_Ready(&TapType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&TapType);
    if (PyModule_AddObject(m, "Tap", (PyObject *)&TapType) < 0) {
        Py_DECREF(&TapType);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *all = Py_BuildValue("[ss]", "Tap", "table_address");
    if (!all || PyModule_AddObject(m, "__all__", all) < 0) {
        Py_XDECREF(all);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/* Condense RPC transport for one unary call; section numbers refer to Protos/README.md. */
#define _POSIX_C_SOURCE 200809L

#include "rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "condense/v1/envelope.pb-c.h"

enum {
    LENGTH_PREFIX_BYTES = 4,
    CALL_STREAM_ID = 1,                 /* the first (and only) client stream on the connection */
    DEFAULT_CONNECT_TIMEOUT_MS = 10000, /* without a call deadline, an unreachable host still fails */
    CANCEL_WRITE_TIMEOUT_MS = 1000,     /* best-effort CANCEL after the deadline passed */
};

static const int64_t NO_DEADLINE = -1;

static void set_status(RpcStatus *status, int code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void set_status(RpcStatus *status, int code, const char *format, ...) {
    status->code = code;
    status->retry_after_ms = 0;
    va_list args;
    va_start(args, format);
    vsnprintf(status->message, sizeof status->message, format, args);
    va_end(args);
}

const char *rpc_status_name(int code) {
    const ProtobufCEnumValue *value =
        protobuf_c_enum_descriptor_get_value(&condense__v1__status_code__descriptor, code);
    return value != NULL ? value->name : "UNKNOWN";
}

void rpc_buffer_free(RpcBuffer *buffer) {
    free(buffer->data);
    buffer->data = NULL;
    buffer->len = 0;
    buffer->cap = 0;
}

static bool buffer_reserve(RpcBuffer *buffer, size_t extra) {
    if (buffer->cap - buffer->len >= extra) return true;
    size_t cap = buffer->cap > 0 ? buffer->cap : 256;
    while (cap - buffer->len < extra) {
        if (cap > SIZE_MAX / 2) return false;
        cap *= 2;
    }
    uint8_t *data = realloc(buffer->data, cap);
    if (data == NULL) return false;
    buffer->data = data;
    buffer->cap = cap;
    return true;
}

/* MARK: time */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds until `deadline` for poll(): -1 = wait forever, 0 = already passed. */
static int poll_timeout(int64_t deadline) {
    if (deadline == NO_DEADLINE) return -1;
    int64_t left = deadline - now_ms();
    if (left <= 0) return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits for `events` on `fd`. Returns 1 when ready, 0 at the deadline, -1 on error (errno set). */
static int wait_for(int fd, short events, int64_t deadline) {
    for (;;) {
        struct pollfd entry = {.fd = fd, .events = events, .revents = 0};
        int ready = poll(&entry, 1, poll_timeout(deadline));
        if (ready >= 0) return ready;
        if (errno != EINTR) return -1;
    }
}

/* MARK: socket I/O */

static int connect_to(const RpcCall *call, int64_t deadline, RpcStatus *status) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *addresses = NULL;
    int resolved = getaddrinfo(call->host, call->port, &hints, &addresses);
    if (resolved != 0) {
        set_status(status, CONDENSE__V1__STATUS_CODE__UNAVAILABLE, "cannot resolve %s: %s", call->host,
                   gai_strerror(resolved));
        return -1;
    }
    int64_t connect_deadline = deadline != NO_DEADLINE ? deadline : now_ms() + DEFAULT_CONNECT_TIMEOUT_MS;
    int fd = -1;
    int failure = 0;
    for (const struct addrinfo *address = addresses; address != NULL; address = address->ai_next) {
        fd = socket(address->ai_family, address->ai_socktype, address->ai_protocol);
        if (fd < 0) {
            failure = errno;
            continue;
        }
        /* Non-blocking, so that connect, reads and writes all honour the deadline through poll(). */
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
            failure = errno;
        } else if (connect(fd, address->ai_addr, address->ai_addrlen) == 0) {
            break;
        } else if (errno != EINPROGRESS) {
            failure = errno;
        } else {
            int ready = wait_for(fd, POLLOUT, connect_deadline);
            if (ready > 0) {
                int error = 0;
                socklen_t length = sizeof error;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) error = errno;
                if (error == 0) break;
                failure = error;
            } else {
                failure = ready == 0 ? ETIMEDOUT : errno;
            }
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addresses);
    if (fd < 0) {
        set_status(status, CONDENSE__V1__STATUS_CODE__UNAVAILABLE, "cannot connect to %s:%s: %s", call->host,
                   call->port, strerror(failure));
        return -1;
    }
    /* Frames are written whole; don't let Nagle hold back the half-close or a ping answer. */
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    return fd;
}

static int write_all(int fd, const uint8_t *data, size_t len, int64_t deadline, RpcStatus *status) {
    while (len > 0) {
        ssize_t sent = send(fd, data, len, MSG_NOSIGNAL);
        if (sent > 0) {
            data += sent;
            len -= (size_t)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR) continue;
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int ready = wait_for(fd, POLLOUT, deadline);
            if (ready > 0) continue;
            if (ready == 0) {
                set_status(status, CONDENSE__V1__STATUS_CODE__DEADLINE_EXCEEDED, "deadline passed while sending");
                return -1;
            }
        }
        set_status(status, CONDENSE__V1__STATUS_CODE__UNAVAILABLE, "connection lost while sending: %s",
                   strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads exactly `len` bytes. `in_frame` only sharpens the message when the peer closes. */
static int read_exact(int fd, uint8_t *data, size_t len, int64_t deadline, bool in_frame, RpcStatus *status) {
    while (len > 0) {
        ssize_t got = recv(fd, data, len, 0);
        if (got > 0) {
            data += got;
            len -= (size_t)got;
            in_frame = true;
            continue;
        }
        if (got == 0) {
            set_status(status, CONDENSE__V1__STATUS_CODE__UNAVAILABLE, "server closed the connection%s",
                       in_frame ? " in the middle of a frame" : " before the call ended");
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int ready = wait_for(fd, POLLIN, deadline);
            if (ready > 0) continue;
            if (ready == 0) {
                set_status(status, CONDENSE__V1__STATUS_CODE__DEADLINE_EXCEEDED, "no answer before the deadline");
                return -1;
            }
        }
        set_status(status, CONDENSE__V1__STATUS_CODE__UNAVAILABLE, "connection lost while receiving: %s",
                   strerror(errno));
        return -1;
    }
    return 0;
}

/* MARK: frames */

/* Appends the length prefix and the serialized envelope; refuses frames over the limit (§1). */
static int append_frame(RpcBuffer *out, const Condense__V1__Envelope *envelope, RpcStatus *status) {
    size_t size = condense__v1__envelope__get_packed_size(envelope);
    if (size > RPC_MAX_FRAME_SIZE) {
        set_status(status, CONDENSE__V1__STATUS_CODE__RESOURCE_EXHAUSTED,
                   "request frame of %zu bytes is over the %u-byte frame limit", size, RPC_MAX_FRAME_SIZE);
        return -1;
    }
    if (!buffer_reserve(out, LENGTH_PREFIX_BYTES + size)) {
        set_status(status, CONDENSE__V1__STATUS_CODE__RESOURCE_EXHAUSTED, "out of memory for a %zu-byte frame",
                   size);
        return -1;
    }
    uint8_t *prefix = out->data + out->len;
    prefix[0] = (uint8_t)(size >> 24);
    prefix[1] = (uint8_t)(size >> 16);
    prefix[2] = (uint8_t)(size >> 8);
    prefix[3] = (uint8_t)size;
    condense__v1__envelope__pack(envelope, prefix + LENGTH_PREFIX_BYTES);
    out->len += LENGTH_PREFIX_BYTES + size;
    return 0;
}

static int send_envelope(int fd, const Condense__V1__Envelope *envelope, int64_t deadline, RpcStatus *status) {
    RpcBuffer frame = {0};
    int result = append_frame(&frame, envelope, status);
    if (result == 0) result = write_all(fd, frame.data, frame.len, deadline, status);
    rpc_buffer_free(&frame);
    return result;
}

/* Reads one frame; the caller frees the envelope with condense__v1__envelope__free_unpacked. */
static Condense__V1__Envelope *read_envelope(int fd, int64_t deadline, RpcStatus *status) {
    uint8_t prefix[LENGTH_PREFIX_BYTES];
    if (read_exact(fd, prefix, sizeof prefix, deadline, false, status) < 0) return NULL;
    uint32_t size = (uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 | (uint32_t)prefix[2] << 8 | prefix[3];
    /* Checked before reading the body (§1): a bogus length must not make us allocate gigabytes. */
    if (size > RPC_MAX_FRAME_SIZE) {
        set_status(status, CONDENSE__V1__STATUS_CODE__RESOURCE_EXHAUSTED,
                   "server sent a %u-byte frame, over the %u-byte frame limit", size, RPC_MAX_FRAME_SIZE);
        return NULL;
    }
    uint8_t *body = malloc(size > 0 ? size : 1);
    if (body == NULL) {
        set_status(status, CONDENSE__V1__STATUS_CODE__RESOURCE_EXHAUSTED, "out of memory for a %u-byte frame",
                   size);
        return NULL;
    }
    Condense__V1__Envelope *envelope = NULL;
    if (read_exact(fd, body, size, deadline, true, status) == 0) {
        envelope = condense__v1__envelope__unpack(NULL, size, body);
        if (envelope == NULL) {
            set_status(status, CONDENSE__V1__STATUS_CODE__INTERNAL, "server sent an undecodable %u-byte envelope",
                       size);
        } else if (envelope->kind < CONDENSE__V1__FRAME_KIND__FRAME_KIND_HEADERS ||
                   envelope->kind > CONDENSE__V1__FRAME_KIND__FRAME_KIND_WINDOW_UPDATE) {
            set_status(status, CONDENSE__V1__STATUS_CODE__INTERNAL, "server sent a frame of unknown kind %d",
                       (int)envelope->kind);
            condense__v1__envelope__free_unpacked(envelope, NULL);
            envelope = NULL;
        }
    }
    free(body);
    return envelope;
}

static void status_from_envelope(const Condense__V1__Envelope *envelope, int fallback_code, const char *fallback,
                                 RpcStatus *status) {
    if (envelope->status == NULL) {
        set_status(status, fallback_code, "%s", fallback);
        return;
    }
    set_status(status, (int)envelope->status->code, "%s", envelope->status->message);
    status->retry_after_ms = envelope->status->retry_after_ms;
}

/* MARK: the call */

/* HEADERS + MESSAGE + half-close TRAILERS, written in one go (§4). */
static int send_request(int fd, const RpcCall *call, const uint8_t *request, size_t request_len, int64_t deadline,
                        RpcStatus *status) {
    char *bearer = NULL;
    Condense__V1__MetadataEntry authorization = CONDENSE__V1__METADATA_ENTRY__INIT;
    Condense__V1__MetadataEntry *metadata[1] = {&authorization};
    Condense__V1__Envelope headers = CONDENSE__V1__ENVELOPE__INIT;
    headers.stream_id = CALL_STREAM_ID;
    headers.kind = CONDENSE__V1__FRAME_KIND__FRAME_KIND_HEADERS;
    headers.method = (char *)call->method;
    headers.timeout_ms = call->timeout_ms;
    if (call->token != NULL) {
        static const char scheme[] = "Bearer ";
        size_t length = sizeof scheme + strlen(call->token);
        bearer = malloc(length);
        if (bearer == NULL) {
            set_status(status, CONDENSE__V1__STATUS_CODE__RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        snprintf(bearer, length, "%s%s", scheme, call->token);
        authorization.key = "authorization";
        authorization.value = bearer;
        headers.n_metadata = 1;
        headers.metadata = metadata;
    }

    Condense__V1__Envelope message = CONDENSE__V1__ENVELOPE__INIT;
    message.stream_id = CALL_STREAM_ID;
    message.kind = CONDENSE__V1__FRAME_KIND__FRAME_KIND_MESSAGE;
    message.payload.data = (uint8_t *)request;
    message.payload.len = request_len;

    Condense__V1__Envelope half_close = CONDENSE__V1__ENVELOPE__INIT;
    half_close.stream_id = CALL_STREAM_ID;
    half_close.kind = CONDENSE__V1__FRAME_KIND__FRAME_KIND_TRAILERS;

    RpcBuffer frames = {0};
    int result = append_frame(&frames, &headers, status);
    if (result == 0) result = append_frame(&frames, &message, status);
    if (result == 0) result = append_frame(&frames, &half_close, status);
    if (result == 0) result = write_all(fd, frames.data, frames.len, deadline, status);
    rpc_buffer_free(&frames);
    free(bearer);
    return result;
}

static void send_cancel(int fd) {
    Condense__V1__Status reason = CONDENSE__V1__STATUS__INIT;
    reason.code = CONDENSE__V1__STATUS_CODE__CANCELLED;
    reason.message = "deadline exceeded";
    Condense__V1__Envelope cancel = CONDENSE__V1__ENVELOPE__INIT;
    cancel.stream_id = CALL_STREAM_ID;
    cancel.kind = CONDENSE__V1__FRAME_KIND__FRAME_KIND_CANCEL;
    cancel.status = &reason;
    RpcStatus ignored;
    send_envelope(fd, &cancel, now_ms() + CANCEL_WRITE_TIMEOUT_MS, &ignored);
}

typedef enum { CALL_CONTINUES, CALL_ENDED_OK, CALL_FAILED } CallProgress;

/* Applies one received frame to the call (§3, §8, §9). */
static CallProgress handle_frame(int fd, const Condense__V1__Envelope *envelope, int64_t deadline, bool *has_response,
                                 RpcBuffer *response, RpcStatus *status) {
    switch (envelope->kind) {
    case CONDENSE__V1__FRAME_KIND__FRAME_KIND_PING: {
        if (envelope->ping_ack) return CALL_CONTINUES;
        Condense__V1__Envelope ack = CONDENSE__V1__ENVELOPE__INIT;
        ack.kind = CONDENSE__V1__FRAME_KIND__FRAME_KIND_PING;
        ack.payload = envelope->payload;
        ack.ping_ack = 1;
        return send_envelope(fd, &ack, deadline, status) == 0 ? CALL_CONTINUES : CALL_FAILED;
    }
    case CONDENSE__V1__FRAME_KIND__FRAME_KIND_GOAWAY:
        /* GOAWAY's stream_id is the last stream the server will serve, not the stream it belongs to. */
        if (envelope->stream_id >= CALL_STREAM_ID) return CALL_CONTINUES;
        set_status(status, CONDENSE__V1__STATUS_CODE__UNAVAILABLE, "server is going away: %s",
                   envelope->status != NULL ? envelope->status->message : "no reason given");
        return CALL_FAILED;
    default:
        break;
    }
    if (envelope->stream_id == 0) {
        if (envelope->kind != CONDENSE__V1__FRAME_KIND__FRAME_KIND_TRAILERS) return CALL_CONTINUES;
        status_from_envelope(envelope, CONDENSE__V1__STATUS_CODE__INTERNAL, "connection error without a status",
                             status);
        return CALL_FAILED;
    }
    if (envelope->stream_id != CALL_STREAM_ID) return CALL_CONTINUES;

    switch (envelope->kind) {
    case CONDENSE__V1__FRAME_KIND__FRAME_KIND_MESSAGE:
        if (*has_response) {
            set_status(status, CONDENSE__V1__STATUS_CODE__INTERNAL, "server sent a second response to a unary call");
            return CALL_FAILED;
        }
        if (!buffer_reserve(response, envelope->payload.len)) {
            set_status(status, CONDENSE__V1__STATUS_CODE__RESOURCE_EXHAUSTED, "out of memory for the response");
            return CALL_FAILED;
        }
        if (envelope->payload.len > 0) memcpy(response->data, envelope->payload.data, envelope->payload.len);
        response->len = envelope->payload.len;
        *has_response = true;
        return CALL_CONTINUES;
    case CONDENSE__V1__FRAME_KIND__FRAME_KIND_TRAILERS:
        status_from_envelope(envelope, CONDENSE__V1__STATUS_CODE__INTERNAL, "server trailers without a status",
                             status);
        if (status->code != CONDENSE__V1__STATUS_CODE__OK) return CALL_FAILED;
        if (!*has_response) {
            set_status(status, CONDENSE__V1__STATUS_CODE__INTERNAL, "server ended the call OK without a response");
            return CALL_FAILED;
        }
        return CALL_ENDED_OK;
    case CONDENSE__V1__FRAME_KIND__FRAME_KIND_CANCEL:
        set_status(status, CONDENSE__V1__STATUS_CODE__CANCELLED, "server cancelled the call%s%s",
                   envelope->status != NULL ? ": " : "", envelope->status != NULL ? envelope->status->message : "");
        return CALL_FAILED;
    default:
        /* WINDOW_UPDATE: our one request message fits the initial window of 64. */
        return CALL_CONTINUES;
    }
}

int rpc_unary_call(const RpcCall *call, const uint8_t *request, size_t request_len, RpcBuffer *response,
                   RpcStatus *status) {
    set_status(status, CONDENSE__V1__STATUS_CODE__OK, "%s", "");
    response->len = 0;
    int64_t start = now_ms();
    /* A timeout too large to add to the clock is no local deadline (the server still gets it). */
    bool local_deadline = call->timeout_ms > 0 && call->timeout_ms < (uint64_t)(INT64_MAX - start);
    int64_t deadline = local_deadline ? start + (int64_t)call->timeout_ms : NO_DEADLINE;
    int fd = connect_to(call, deadline, status);
    if (fd < 0) return -1;

    CallProgress progress = CALL_FAILED;
    if (send_request(fd, call, request, request_len, deadline, status) == 0) {
        bool has_response = false;
        progress = CALL_CONTINUES;
        while (progress == CALL_CONTINUES) {
            Condense__V1__Envelope *envelope = read_envelope(fd, deadline, status);
            if (envelope == NULL) {
                progress = CALL_FAILED;
                break;
            }
            progress = handle_frame(fd, envelope, deadline, &has_response, response, status);
            condense__v1__envelope__free_unpacked(envelope, NULL);
        }
    }
    /* Deadline passed locally: tell the server to stop working on the call (§6). */
    if (progress == CALL_FAILED && status->code == CONDENSE__V1__STATUS_CODE__DEADLINE_EXCEEDED) send_cancel(fd);
    close(fd);
    return progress == CALL_ENDED_OK ? 0 : -1;
}

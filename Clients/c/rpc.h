/*
 * A minimal client for Condense's RPC transport (Protos/README.md): one TCP connection, one unary
 * call. Frames are a 4-byte big-endian length followed by a serialized condense.v1.Envelope.
 */
#ifndef CONDENSE_RPC_H
#define CONDENSE_RPC_H

#include <stddef.h>
#include <stdint.h>

/* Protocol constant (README §1): the largest frame either side accepts, 16 MiB. */
#define RPC_MAX_FRAME_SIZE (16u * 1024u * 1024u)

/* Outcome of a call: a gRPC status code (condense.v1.StatusCode) and a human-readable message. */
typedef struct {
    int code;
    char message[1024];
    uint32_t retry_after_ms; /* server hint on UNAVAILABLE / RESOURCE_EXHAUSTED; 0 = none */
} RpcStatus;

/* An owned byte buffer (free with rpc_buffer_free). */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} RpcBuffer;

typedef struct {
    const char *host;   /* name or address; IPv6 without brackets */
    const char *port;   /* decimal port number */
    const char *method; /* e.g. "/condense.v1.EmbeddingService/Embed" */
    const char *token;  /* sent as "authorization: Bearer <token>"; NULL = none */
    uint64_t timeout_ms; /* deadline for connect + call; 0 = none (connect still gives up after 10 s) */
} RpcCall;

/* The status code's name as in envelope.proto, e.g. "INVALID_ARGUMENT". */
const char *rpc_status_name(int code);

/*
 * Performs one unary call: sends HEADERS, one MESSAGE with `request`, and the half-close, then reads
 * frames until the call's TRAILERS, answering PINGs and ignoring other streams.
 * Returns 0 when the call ended OK; `response` then holds the single response payload.
 * Otherwise returns -1 with `status` describing the failure (transport failures use UNAVAILABLE,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED or INTERNAL, as the README's client rules say).
 */
int rpc_unary_call(const RpcCall *call, const uint8_t *request, size_t request_len, RpcBuffer *response,
                   RpcStatus *status);

void rpc_buffer_free(RpcBuffer *buffer);

#endif

/*
 * condense-embed-c: embeds texts with a Condense server through one unary
 * /condense.v1.EmbeddingService/Embed call and prints each vector's dimension and first values.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condense/v1/common.pb-c.h"
#include "condense/v1/embedding.pb-c.h"
#include "condense/v1/envelope.pb-c.h"
#include "rpc.h"

enum {
    EXIT_CALL_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_ITEMS_FAILED = 3,
    PRINTED_VALUES = 5,
};

static const char EMBED_METHOD[] = "/condense.v1.EmbeddingService/Embed";

static const char USAGE[] =
    "usage: condense-embed-c [options] HOST:PORT TEXT...\n"
    "\n"
    "Embeds the TEXTs in one Embed call and prints one line per text:\n"
    "  <index> dim=<D> [v0, v1, v2, v3, v4, ...]\n"
    "\n"
    "options:\n"
    "  --prompt NAME|TEMPLATE  a prompt name the server knows, or a template containing {text}\n"
    "  --pooling MODE          mean, last, eos or weighted-mean (default: the server's)\n"
    "  --token TOKEN           send 'authorization: Bearer TOKEN'\n"
    "  --timeout-ms N          deadline for the whole call in milliseconds (default: none)\n"
    "  --help                  show this help\n"
    "  --                      end of options (for texts that start with --)\n"
    "\n"
    "exit status: 0 all texts embedded, 1 the call failed, 2 usage error, 3 some texts failed\n";

typedef struct {
    RpcCall call;
    char *host_storage; /* owns call.host and call.port */
    const char *prompt;
    Condense__V1__Pooling pooling;
    const char **texts;
    size_t text_count;
} Arguments;

static void free_arguments(Arguments *arguments) {
    free(arguments->host_storage);
    free(arguments->texts);
}

static int usage_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *format, ...) {
    fputs("condense-embed-c: ", stderr);
    va_list args;
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputs("\n(see --help)\n", stderr);
    return -1;
}

/* HOST:PORT or [IPV6]:PORT; port 1...65535. */
static int parse_address(const char *address, Arguments *arguments) {
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address || colon[1] == '\0')
        return usage_error("address '%s' is not HOST:PORT", address);
    char *end = NULL;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port == 0 || port > 65535 || colon[1] < '0' || colon[1] > '9')
        return usage_error("'%s' has no valid port (1-65535)", address);

    const char *host = address;
    size_t host_len = (size_t)(colon - address);
    if (host[0] == '[') {
        if (host_len < 3 || host[host_len - 1] != ']') return usage_error("address '%s' has an unclosed [", address);
        host += 1;
        host_len -= 2;
    }
    size_t port_len = strlen(colon + 1);
    char *storage = malloc(host_len + 1 + port_len + 1);
    if (storage == NULL) return usage_error("out of memory");
    memcpy(storage, host, host_len);
    storage[host_len] = '\0';
    memcpy(storage + host_len + 1, colon + 1, port_len + 1);
    arguments->host_storage = storage;
    arguments->call.host = storage;
    arguments->call.port = storage + host_len + 1;
    return 0;
}

static int parse_pooling(const char *name, Condense__V1__Pooling *pooling) {
    static const struct {
        const char *name;
        Condense__V1__Pooling value;
    } modes[] = {
        {"mean", CONDENSE__V1__POOLING__POOLING_MEAN},
        {"last", CONDENSE__V1__POOLING__POOLING_LAST},
        {"eos", CONDENSE__V1__POOLING__POOLING_EOS},
        {"weighted-mean", CONDENSE__V1__POOLING__POOLING_WEIGHTED_MEAN},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        if (strcmp(name, modes[i].name) == 0) {
            *pooling = modes[i].value;
            return 0;
        }
    }
    return usage_error("unknown pooling '%s' (mean, last, eos, weighted-mean)", name);
}

static int parse_timeout(const char *text, uint64_t *timeout_ms) {
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || text[0] < '0' || text[0] > '9' || value == 0)
        return usage_error("--timeout-ms needs a positive whole number of milliseconds, not '%s'", text);
    *timeout_ms = value;
    return 0;
}

typedef enum { OPTION_PROMPT, OPTION_POOLING, OPTION_TOKEN, OPTION_TIMEOUT_MS, OPTION_COUNT } Option;
static const char *const OPTION_NAMES[OPTION_COUNT] = {"--prompt", "--pooling", "--token", "--timeout-ms"};

/* Returns 0, 1 for --help, or -1 after printing a usage error. Options may appear anywhere. */
static int parse_arguments(int argc, char **argv, Arguments *arguments) {
    arguments->texts = calloc((size_t)argc, sizeof *arguments->texts);
    if (arguments->texts == NULL) return usage_error("out of memory");
    const char *address = NULL;
    bool options_ended = false;
    for (int i = 1; i < argc; i++) {
        const char *argument = argv[i];
        if (options_ended || strncmp(argument, "--", 2) != 0) {
            if (address == NULL) address = argument;
            else arguments->texts[arguments->text_count++] = argument;
            continue;
        }
        if (strcmp(argument, "--") == 0) {
            options_ended = true;
            continue;
        }
        if (strcmp(argument, "--help") == 0) return 1;
        /* --name VALUE or --name=VALUE */
        const char *equals = strchr(argument, '=');
        size_t name_len = equals != NULL ? (size_t)(equals - argument) : strlen(argument);
        const char *value = equals != NULL ? equals + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        Option option = OPTION_COUNT;
        for (Option candidate = 0; candidate < OPTION_COUNT; candidate++) {
            const char *name = OPTION_NAMES[candidate];
            if (strlen(name) == name_len && strncmp(argument, name, name_len) == 0) option = candidate;
        }
        if (option == OPTION_COUNT) return usage_error("unknown option '%s'", argument);
        if (value == NULL) return usage_error("%s needs a value", OPTION_NAMES[option]);
        if (equals == NULL) i++;
        switch (option) {
        case OPTION_PROMPT:
            arguments->prompt = value;
            break;
        case OPTION_POOLING:
            if (parse_pooling(value, &arguments->pooling) < 0) return -1;
            break;
        case OPTION_TOKEN:
            arguments->call.token = value;
            break;
        case OPTION_TIMEOUT_MS:
        case OPTION_COUNT:
            if (parse_timeout(value, &arguments->call.timeout_ms) < 0) return -1;
            break;
        }
    }
    if (address == NULL) return usage_error("missing HOST:PORT");
    if (arguments->text_count == 0) return usage_error("no texts to embed");
    return parse_address(address, arguments);
}

static const char *enum_name(const ProtobufCEnumDescriptor *descriptor, int value) {
    const ProtobufCEnumValue *entry = protobuf_c_enum_descriptor_get_value(descriptor, value);
    return entry != NULL ? entry->name : "UNKNOWN";
}

static int call_failed(const RpcStatus *status) {
    fprintf(stderr, "error: %s: %s", rpc_status_name(status->code), status->message);
    if (status->retry_after_ms > 0) fprintf(stderr, " (retry after %" PRIu32 " ms)", status->retry_after_ms);
    fputc('\n', stderr);
    return EXIT_CALL_FAILED;
}

static int malformed_response(const char *what) {
    RpcStatus status = {.code = CONDENSE__V1__STATUS_CODE__INTERNAL};
    snprintf(status.message, sizeof status.message, "malformed EmbedResponse: %s", what);
    return call_failed(&status);
}

static void print_vector(size_t index, const Condense__V1__Vector *vector) {
    printf("%zu dim=%zu [", index, vector->n_values);
    for (size_t i = 0; i < vector->n_values && i < PRINTED_VALUES; i++) {
        printf(i == 0 ? "%.6f" : ", %.6f", (double)vector->values[i]);
    }
    printf("%s]\n", vector->n_values > PRINTED_VALUES ? ", ..." : "");
}

/* Checks that there is exactly one well-formed result per text and prints them in input order. */
static int print_results(const Condense__V1__EmbedResponse *response, size_t text_count) {
    if (response->n_results != text_count) return malformed_response("result count differs from text count");
    const Condense__V1__EmbeddingResult **by_index = calloc(text_count, sizeof *by_index);
    if (by_index == NULL) return malformed_response("out of memory");
    const char *problem = NULL;
    for (size_t i = 0; i < response->n_results && problem == NULL; i++) {
        const Condense__V1__EmbeddingResult *result = response->results[i];
        if (result->index >= text_count || by_index[result->index] != NULL) {
            problem = "result index out of range or repeated";
        } else if (result->error == NULL &&
                   (result->vector == NULL ||
                    (result->vector->precision != CONDENSE__V1__PRECISION__PRECISION_FLOAT32 &&
                     result->vector->precision != CONDENSE__V1__PRECISION__PRECISION_UNSPECIFIED))) {
            problem = "a result has neither an error nor a float32 vector";
        } else {
            by_index[result->index] = result;
        }
    }
    if (problem != NULL) {
        free(by_index);
        return malformed_response(problem);
    }
    int exit_code = EXIT_SUCCESS;
    for (size_t index = 0; index < text_count; index++) {
        const Condense__V1__EmbeddingResult *result = by_index[index];
        if (result->error != NULL) {
            printf("%zu error: %s: %s\n", index,
                   enum_name(&condense__v1__item_error_code__descriptor, (int)result->error->code),
                   result->error->message);
            exit_code = EXIT_ITEMS_FAILED;
        } else {
            print_vector(index, result->vector);
        }
    }
    free(by_index);
    return exit_code;
}

static int embed(const Arguments *arguments) {
    Condense__V1__EmbedOptions options = CONDENSE__V1__EMBED_OPTIONS__INIT;
    options.pooling = arguments->pooling;
    if (arguments->prompt != NULL) {
        /* Same rule as the Python client: a template is recognised by its {text} placeholder. */
        if (strstr(arguments->prompt, "{text}") != NULL) {
            options.prompt_case = CONDENSE__V1__EMBED_OPTIONS__PROMPT_PROMPT_TEMPLATE;
            options.prompt_template = (char *)arguments->prompt;
        } else {
            options.prompt_case = CONDENSE__V1__EMBED_OPTIONS__PROMPT_PROMPT_NAME;
            options.prompt_name = (char *)arguments->prompt;
        }
    }
    Condense__V1__EmbedRequest request = CONDENSE__V1__EMBED_REQUEST__INIT;
    request.n_texts = arguments->text_count;
    request.texts = (char **)arguments->texts;
    /* Unset options = all server defaults; leaving them out keeps the request minimal. */
    bool has_options = arguments->prompt != NULL || arguments->pooling != CONDENSE__V1__POOLING__POOLING_UNSPECIFIED;
    request.options = has_options ? &options : NULL;

    size_t request_len = condense__v1__embed_request__get_packed_size(&request);
    uint8_t *request_bytes = malloc(request_len > 0 ? request_len : 1);
    if (request_bytes == NULL) {
        RpcStatus status = {.code = CONDENSE__V1__STATUS_CODE__RESOURCE_EXHAUSTED};
        snprintf(status.message, sizeof status.message, "out of memory for a %zu-byte request", request_len);
        return call_failed(&status);
    }
    condense__v1__embed_request__pack(&request, request_bytes);

    RpcBuffer payload = {0};
    RpcStatus status;
    int called = rpc_unary_call(&arguments->call, request_bytes, request_len, &payload, &status);
    free(request_bytes);
    if (called < 0) {
        rpc_buffer_free(&payload);
        return call_failed(&status);
    }
    Condense__V1__EmbedResponse *response = condense__v1__embed_response__unpack(NULL, payload.len, payload.data);
    rpc_buffer_free(&payload);
    if (response == NULL) return malformed_response("undecodable payload");
    int exit_code = print_results(response, arguments->text_count);
    condense__v1__embed_response__free_unpacked(response, NULL);
    return exit_code;
}

int main(int argc, char **argv) {
    Arguments arguments = {.call = {.method = EMBED_METHOD}};
    int parsed = parse_arguments(argc, argv, &arguments);
    int exit_code;
    if (parsed == 1) {
        fputs(USAGE, stdout);
        exit_code = EXIT_SUCCESS;
    } else if (parsed < 0) {
        exit_code = EXIT_USAGE;
    } else {
        exit_code = embed(&arguments);
    }
    free_arguments(&arguments);
    if (fflush(stdout) != 0 && exit_code == EXIT_SUCCESS) {
        fprintf(stderr, "error: cannot write the output: %s\n", strerror(errno));
        exit_code = EXIT_CALL_FAILED;
    }
    return exit_code;
}

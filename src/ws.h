/*
 * ws.h - RFC 6455 frame codec for the server side: a streaming decoder for
 * client frames and an encoder for server frames, plus the handshake key.
 *
 * Owner: a struct ws_decoder belongs to one connection and so to that
 * connection's worker thread; nothing here touches globals, sockets or
 * libevent, so the codec is tested and fuzzed on plain byte arrays.
 *
 * The decoder is fed whatever bytes the socket produced, split anywhere.
 * It keeps frame headers and partial payloads in its own state, so the
 * caller never keeps unread input. Each call to ws_decode() consumes bytes
 * up to and including the end of at most one event and reports it; the
 * caller loops until everything is consumed or an error is reported.
 *
 * Rules applied (PROTOCOL.md sections 1 and 6, RFC 6455 section 5):
 *   - client frames must be masked                          -> 1002
 *   - RSV1..3 must be 0 (no extension is ever negotiated)   -> 1002
 *   - opcodes 3-7 and 11-15 are reserved                    -> 1002
 *   - control frames: FIN set, payload <= 125               -> 1002
 *   - continuation without a message open, or a new data
 *     frame while one is open                               -> 1002
 *   - a 64-bit length with its top bit set                 -> 1002
 *   - binary data frame                                     -> 1003
 *   - a frame or reassembled message over max_message       -> 1009
 *   - text that is not UTF-8, checked incrementally as
 *     fragments arrive (fail fast)                          -> 1007
 *   - close payload of 1 byte, or a close code that may not
 *     be sent on the wire                                   -> 1002
 *   - close reason that is not UTF-8                        -> 1007
 */
#ifndef PARLEY_WS_H
#define PARLEY_WS_H

#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xA,
};

/* Close codes the server sends (RFC 6455 section 7.4.1). */
enum ws_close_code {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_UNSUPPORTED = 1003,
	WS_CLOSE_NO_STATUS = 1005,      /* never on the wire: "close had no code" */
	WS_CLOSE_INVALID_DATA = 1007,
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011,
	WS_CLOSE_TRY_AGAIN = 1013,
};

/* What one ws_decode() call found. */
enum ws_event {
	WS_EV_NEED_MORE = 0, /* all input consumed, no complete event yet */
	WS_EV_TEXT,          /* a complete text message: data, len */
	WS_EV_PING,          /* data, len: payload to echo in a pong */
	WS_EV_PONG,          /* data, len */
	WS_EV_CLOSE,         /* close_code (WS_CLOSE_NO_STATUS if none), data/len = reason */
	WS_EV_ERROR,         /* fail the connection with close_code; stop feeding */
};

struct ws_message {
	const uint8_t *data; /* valid until the next ws_decode() or ws_decoder_free() */
	size_t len;
	uint16_t close_code; /* WS_EV_CLOSE: the peer's code; WS_EV_ERROR: code to send */
	const char *error;   /* WS_EV_ERROR: a short reason for the log */
};

/*
 * Decoder state. Embedded in each connection, so kept small: a partially
 * received data message is held in a heap buffer that exists only while the
 * message is incomplete; control payloads (<= 125 bytes) have a fixed slot.
 */
struct ws_decoder {
	size_t max_message;     /* limit for one frame and for a reassembled message */

	/* header of the frame being received */
	uint8_t hdr[14];
	uint8_t hdr_len;        /* bytes of hdr received so far */
	uint8_t hdr_need;       /* total header size once known (2..14) */
	uint8_t opcode;         /* of the current frame */
	uint8_t fin;
	uint8_t mask[4];
	uint64_t payload_len;   /* of the current frame */
	uint64_t payload_got;   /* bytes of it received */

	/* data message being reassembled across frames */
	uint8_t msg_opcode;     /* WS_OP_TEXT while a message is open, else 0 */
	uint8_t *msg;           /* heap; NULL when no partial message is held */
	size_t msg_len, msg_cap;
	utf8_state utf8;        /* validation state across fragments */

	/* control frame payload being received */
	uint8_t ctl[125];
	uint8_t ctl_len;
	uint8_t failed;         /* close code - 1000 of a reported error, else 0 */
};

void ws_decoder_init(struct ws_decoder *d, size_t max_message);
/*
 * Frees the partial-message buffer, if any. A finished message's buffer
 * larger than 4 KiB is also dropped by the next ws_decode() call, even one
 * with len 0, since the last event may point into it until then.
 */
void ws_decoder_free(struct ws_decoder *d);

/*
 * Decode from buf[0..len). Sets *consumed to the number of bytes used (the
 * caller passes buf + *consumed next time) and fills *out for every event
 * other than WS_EV_NEED_MORE. buf is not const: a frame that arrives whole
 * in buf is unmasked in place and reported without a copy.
 */
enum ws_event ws_decode(struct ws_decoder *d, uint8_t *buf, size_t len,
    size_t *consumed, struct ws_message *out);

/* 1 if a close code received from a peer is allowed on the wire. */
int ws_close_code_valid(unsigned code);

/*
 * Encode a server frame header (FIN set, unmasked) for a payload of len
 * bytes into out, which must hold WS_MAX_HEADER bytes. Returns its size.
 */
#define WS_MAX_HEADER 10
size_t ws_frame_header(uint8_t *out, enum ws_opcode op, uint64_t len);

/*
 * Encode a close frame carrying code (and no reason) into out, which must
 * hold 4 bytes. Returns its size (4).
 */
size_t ws_close_frame(uint8_t *out, uint16_t code);

/*
 * Sec-WebSocket-Accept for a client key: base64(SHA-1(key + GUID)).
 * out must hold 29 bytes (28 characters and a NUL).
 */
#define WS_ACCEPT_LEN 28
void ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

/* 1 if key is a valid Sec-WebSocket-Key: base64 of exactly 16 bytes. */
int ws_client_key_valid(const char *key, size_t key_len);

#endif

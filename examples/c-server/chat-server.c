/*
 * chat-server.c: the example hub's base protocol (docs/PROTOCOL.md) in C,
 * on the channelbox C ABI: `/chat/{room}`, `/presence` and `/dm/{user_id}`
 * over WebSocket, HS256 tokens, history on join, slow consumers closed.
 *
 * The shape of an embedding, in one thread and one poll loop:
 *
 *   - libwebsockets owns the sockets and the loop. Each WebSocket gets one
 *     channelbox connection (`cbx_conn_open`) and joins groups.
 *   - A client frame becomes a `cbx_group_send` (room, DM inbox, presence):
 *     the hub copies nothing per member and never blocks; a member whose
 *     bounded queue is full is closed by the hub (slow consumer, 4008).
 *   - The hub's ready fd sits in the same poll loop as the sockets. When it
 *     is readable, one `cbx_hub_recv_ready` call after another (until
 *     `CBX_EMPTY`) hands over what every ready connection has queued; each
 *     message goes to its socket's outbox and the socket is asked for a
 *     writable callback, which writes the outbox until it is empty or the
 *     socket is full. An outbox past --queue-max-bytes is a slow consumer:
 *     its socket gets what it holds, then 4008, as from the hub's queue.
 *
 * Frames are built with jansson in the Rust hub's key order, so both
 * servers send the same bytes. Tokens are checked with libjwt.
 *
 * Build: make -C examples/c-server (see README.md there).
 */

#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <jwt.h>
#include <libwebsockets.h>
#include <uthash.h>

#include "channelbox.h"

/* The Rust hub's defaults (examples/hub/src/config.rs, auth.rs). */
enum {
    HISTORY_REPLAY = 50,     /* saved frames sent on join */
    LEEWAY_SECS = 30,        /* clock skew tolerated on `exp` */
    MAX_SUB_BYTES = 100,     /* two ids and a prefix fit a 256-byte group name */
    MAX_USERNAME_BYTES = 128,
    MAX_ID_BYTES = 128,      /* a room or user id in the path */
    MAX_TOKEN_BYTES = 4096,
    DRAIN_MAX = 256,         /* frames per writable callback, for fairness */
    CLOSE_GRACE_SECS = 10,   /* a closed, stuck socket gets this long */
    MAX_KEPT_OUT_BYTES = 1 << 20, /* the write buffer kept between frames */
};

enum endpoint { CHAT, PRESENCE, DM };

/* Who a token names. Both strings are owned (free with identity_clear). */
struct identity {
    char *sub;      /* the user id: presence entries and DMs name it */
    char *username; /* the display name in `user` and `from` */
};

/* One WebSocket. libwebsockets allocates it (zeroed) per connection and
 * frees it after LWS_CALLBACK_CLOSED; what it points to is ours. */
struct session {
    struct lws *wsi;
    uint64_t conn;           /* its channelbox connection, once `open` */
    bool open;
    enum endpoint endpoint;
    struct identity who;
    char target[MAX_ID_BYTES + 1]; /* the room or the DM peer */
    char *first_frame;       /* `history` or `users`: written before the queue */
    unsigned char *rx;       /* the message being received, in fragments */
    size_t rx_len;
    bool joined;             /* the endpoint's join was counted or told */
    bool choked;             /* stopped writing with frames still queued */
    bool hub_closed;         /* the hub closed it: close once the outbox is out */
    bool slow;               /* its outbox overflowed: 4008 once it is out */
    struct outbox {          /* received from the hub, not written yet */
        cbx_message **ring;  /* `cap` slots, `len` from `head`, oldest first */
        size_t head, len, cap;
        size_t bytes;        /* payload bytes held */
    } out;
    UT_hash_handle hh;       /* in server.sessions, keyed by conn */
};

/* A user with at least one /presence socket. */
struct online_user {
    char *id;
    char *username;
    const char *status;      /* "online", "away" or "busy" */
    unsigned sockets;
    UT_hash_handle hh;       /* in server.online, keyed by id */
};

/* Everything the server holds; one thread touches it. */
static struct server {
    cbx_hub *hub;
    const char *secret;
    size_t max_frame_bytes;      /* larger client messages: close 1009 */
    struct session *sessions;    /* by channelbox connection id */
    struct online_user *online;  /* /presence users by id */
    bool stopping;               /* SIGINT/SIGTERM: no leave notices */
    size_t queue_max_bytes;      /* a socket's outbox: 4008 above */
    unsigned char *out;          /* LWS_PRE bytes + the frame being written */
    size_t out_cap;
} server;

/* ---- channelbox calls ------------------------------------------------- */

/* Every channelbox call is checked: a failure is logged with the code's
 * name and cbx_last_error(), which says why. */
static bool checked(cbx_result rc, const char *call) {
    if (rc == CBX_OK)
        return true;
    fprintf(stderr, "chat-server: %s: %s: %s\n", call, cbx_result_name(rc),
            cbx_last_error());
    return false;
}
#define CBX(call) checked((call), #call)

/* ---- frames ------------------------------------------------------------ */

/* `2026-11-26T04:50:01.123Z`, as the Rust hub stamps frames. */
static void timestamp(char out[32]) {
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", now.tv_nsec / 1000000);
}

/* Compact JSON text of `frame` (consumed); NULL when out of memory. jansson
 * keeps keys in the order they were set: the Rust hub's order. */
static char *encode(json_t *frame) {
    char *text = frame ? json_dumps(frame, JSON_COMPACT) : NULL;
    json_decref(frame);
    return text;
}

static char *error_frame(const char *code, const char *detail) {
    return encode(json_pack("{s:s,s:s,s:s}", "type", "error", "code", code,
                            "detail", detail));
}

/* A presence change; the Rust hub's keys are sorted (a serde_json map). */
static char *status_frame(const struct online_user *u, const char *status) {
    char ts[32];
    timestamp(ts);
    return encode(json_pack("{s:s,s:s,s:s,s:s,s:s}", "status", status,
                            "timestamp", ts, "type", "status", "user",
                            u->username, "user_id", u->id));
}

/* `{"type":"history","epoch":..,"messages":[..]}`: the group's last
 * HISTORY_REPLAY saved frames, oldest first, as they were saved. */
static char *history_frame(const char *group) {
    char *page_json = NULL;
    if (!CBX(cbx_history_json(server.hub, group, 0, HISTORY_REPLAY, &page_json)))
        return NULL;
    json_t *page = json_loads(page_json, 0, NULL);
    cbx_string_free(page_json);
    json_t *messages = json_array();
    json_t *entry;
    size_t i;
    json_array_foreach(json_object_get(page, "messages"), i, entry)
        json_array_append(messages, json_object_get(entry, "payload"));
    json_t *epoch = json_object_get(page, "epoch");
    char *frame = NULL;
    if (json_is_string(epoch))
        frame = encode(json_pack("{s:s,s:O,s:O}", "type", "history", "epoch",
                                 epoch, "messages", messages));
    json_decref(messages);
    json_decref(page);
    return frame;
}

/* The id (history offset) the next frame saved to `group` gets. Offsets
 * count up by one per saved frame and this thread is the only sender, so
 * the last offset plus one is exact: a frame can carry its own id, as the
 * Rust hub's do, and is still encoded once for every member. */
static bool next_id(const char *group, uint64_t *id) {
    char *page_json = NULL;
    if (!CBX(cbx_history_json(server.hub, group, UINT64_MAX, 1, &page_json)))
        return false;
    json_t *page = json_loads(page_json, 0, NULL);
    cbx_string_free(page_json);
    json_t *last = json_object_get(page, "last_offset");
    bool found = json_is_integer(last);
    if (found)
        *id = (uint64_t)json_integer_value(last) + 1;
    json_decref(page);
    return found;
}

/* Saves `frame` (which carries `id`) to `group`'s history and delivers it
 * to the group's members. */
static cbx_result save_and_send(const char *group, uint64_t id, const char *frame) {
    cbx_send_report report;
    if (!frame)
        return CBX_INVALID_ARGUMENT; /* out of memory while encoding */
    cbx_result rc = cbx_group_send(server.hub, group, CBX_JSON,
                                   (const uint8_t *)frame, strlen(frame),
                                   CBX_SAVE_HISTORY, &report);
    if (rc != CBX_OK)
        return rc; /* the caller tells the client, or logs */
    if (report.offset != id)
        fprintf(stderr, "chat-server: %s: saved as %llu, not %llu\n", group,
                (unsigned long long)report.offset, (unsigned long long)id);
    return CBX_OK;
}

/* Sends a frame (consumed) to one socket through its queue, so it keeps
 * its place among the room's frames. */
static void send_to(struct session *s, char *frame) {
    if (frame)
        CBX(cbx_conn_send(server.hub, s->conn, CBX_JSON, (const uint8_t *)frame,
                          strlen(frame)));
    free(frame);
}

/* `{"type":"error","code","detail"}` to the socket; it stays open. */
static void refuse(struct session *s, const char *code, const char *detail) {
    send_to(s, error_frame(code, detail));
}

/* A refused send as an error frame, as the Rust hub's Refusal says it;
 * called right after the failed call, while cbx_last_error() is its. */
static void refuse_send(struct session *s, cbx_result rc) {
    const char *code = rc == CBX_TOO_LARGE ? "too_large"
                     : rc == CBX_INVALID_ARGUMENT || rc == CBX_INVALID_JSON ||
                               rc == CBX_INVALID_UTF8
                         ? "bad_request"
                         : "unavailable";
    refuse(s, code, cbx_last_error());
}

/* ---- tokens ------------------------------------------------------------ */

static void identity_clear(struct identity *who) {
    free(who->sub);
    free(who->username);
    who->sub = who->username = NULL;
}

/* Verifies a token as the Rust hub does (auth.rs): HS256 only, signed with
 * the secret, `exp` an integer no more than LEEWAY_SECS in the past, `sub`
 * a string of 1..MAX_SUB_BYTES, `username` (optional) a string,
 * `roles` (optional) a list, no `aud`. Every refusal is the same 401. */
static bool verify_token(const char *token, struct identity *who) {
    jwt_t *jwt = NULL;
    char *grants = NULL;
    json_t *claims = NULL;
    bool ok = false;

    if (jwt_decode(&jwt, token, (const unsigned char *)server.secret,
                   (int)strlen(server.secret)) != 0)
        goto out;
    /* libjwt verifies whatever algorithm the token names: insist on one. */
    if (jwt_get_alg(jwt) != JWT_ALG_HS256)
        goto out;
    grants = jwt_get_grants_json(jwt, NULL);
    claims = grants ? json_loads(grants, 0, NULL) : NULL;
    json_t *sub = json_object_get(claims, "sub");
    json_t *name = json_object_get(claims, "username");
    json_t *exp = json_object_get(claims, "exp");
    json_t *roles = json_object_get(claims, "roles");
    if (!json_is_string(sub) || json_string_length(sub) == 0 ||
        json_string_length(sub) > MAX_SUB_BYTES)
        goto out;
    if (name && (!json_is_string(name) ||
                 json_string_length(name) > MAX_USERNAME_BYTES))
        goto out;
    if (roles && !json_is_array(roles))
        goto out;
    if (json_object_get(claims, "aud"))
        goto out;
    if (!json_is_integer(exp) ||
        json_integer_value(exp) < (json_int_t)time(NULL) - LEEWAY_SECS)
        goto out;
    /* Strings with a NUL inside are refused by json_loads, so strdup is whole. */
    const char *display = name && json_string_length(name) > 0
                              ? json_string_value(name)
                              : json_string_value(sub);
    who->sub = strdup(json_string_value(sub));
    who->username = strdup(display);
    ok = who->sub && who->username;
    if (!ok)
        identity_clear(who);
out:
    json_decref(claims);
    free(grants);
    jwt_free(jwt);
    return ok;
}

/* The request's token: `Authorization: Bearer` first, then `?token=`. */
static bool request_token(struct lws *wsi, char *buf, int len) {
    if (lws_hdr_copy(wsi, buf, len, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
        strncasecmp(buf, "bearer ", 7) == 0) {
        char *token = buf + 7;
        while (*token == ' ')
            token++;
        size_t n = strlen(token);
        while (n > 0 && token[n - 1] == ' ')
            token[--n] = '\0';
        if (n > 0) {
            memmove(buf, token, n + 1);
            return true;
        }
    }
    const char *arg = lws_get_urlarg_by_name(wsi, "token=", buf, len);
    if (arg && *arg) {
        memmove(buf, arg, strlen(arg) + 1);
        return true;
    }
    return false;
}

/* A room or user id from the path: 1..MAX_ID_BYTES bytes, no '/', no
 * control characters. */
static bool valid_id(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n > MAX_ID_BYTES)
        return false;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* Decides an upgrade from the request: 0 to accept (filling `s`), or the
 * HTTP status to refuse it with (401 for any token problem, 404 for a bad
 * path). The token is checked before the path, as the Rust hub does. */
static unsigned admit(struct lws *wsi, struct session *s) {
    char path[512], token[MAX_TOKEN_BYTES];
    struct identity who = {0};
    if (!request_token(wsi, token, sizeof token) || !verify_token(token, &who))
        return HTTP_STATUS_UNAUTHORIZED;
    unsigned status = HTTP_STATUS_NOT_FOUND;
    const char *id = NULL;
    enum endpoint endpoint;
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0)
        goto out;
    if (strcmp(path, "/presence") == 0 || strcmp(path, "/presence/") == 0) {
        endpoint = PRESENCE;
        id = "";
    } else if (strncmp(path, "/chat/", 6) == 0 && valid_id(path + 6)) {
        endpoint = CHAT;
        id = path + 6;
    } else if (strncmp(path, "/dm/", 4) == 0 && valid_id(path + 4)) {
        endpoint = DM;
        id = path + 4;
    } else {
        goto out;
    }
    status = 0;
    if (s) {
        s->endpoint = endpoint;
        snprintf(s->target, sizeof s->target, "%s", id);
        s->who = who;
        who = (struct identity){0};
    }
out:
    identity_clear(&who);
    return status;
}

/* ---- /chat/{room} -------------------------------------------------------- */

/* Saves and broadcasts `{"type":"system","id","message","timestamp"}`. */
static void system_notice(const char *group, const char *username,
                          const char *what) {
    char text[MAX_USERNAME_BYTES + 32], ts[32];
    uint64_t id;
    snprintf(text, sizeof text, "%s %s the chat", username, what);
    timestamp(ts);
    if (!next_id(group, &id))
        return;
    char *frame = encode(json_pack("{s:s,s:I,s:s,s:s}", "type", "system", "id",
                                   (json_int_t)id, "message", text,
                                   "timestamp", ts));
    checked(save_and_send(group, id, frame), "save_and_send");
    free(frame);
}

static void room_group(const struct session *s, char *out, size_t len) {
    snprintf(out, len, "room:%s", s->target);
}

/* The room hears of the joiner; the joiner gets the `history` frame, its own
 * join notice last, and joins after it: no live frame repeats history. */
static bool chat_join(struct session *s) {
    char group[8 + MAX_ID_BYTES];
    room_group(s, group, sizeof group);
    system_notice(group, s->who.username, "joined");
    s->joined = true;
    s->first_frame = history_frame(group);
    return s->first_frame && CBX(cbx_group_add(server.hub, s->conn, group));
}

static void chat_leave(struct session *s) {
    char group[8 + MAX_ID_BYTES];
    room_group(s, group, sizeof group);
    CBX(cbx_group_remove(server.hub, s->conn, group));
    if (!server.stopping)
        system_notice(group, s->who.username, "left");
}

/* `{"type":"message","id","user","user_id"?,"content","timestamp"}`, saved
 * and broadcast to the room, the sender included. */
static void chat_say(struct session *s, json_t *content) {
    char group[8 + MAX_ID_BYTES], ts[32];
    uint64_t id;
    room_group(s, group, sizeof group);
    timestamp(ts);
    if (!next_id(group, &id)) {
        refuse(s, "unavailable", "history is not readable");
        return;
    }
    /* `user_id` only when it differs from `user`, as in the Rust hub. */
    const char *user_id =
        strcmp(s->who.sub, s->who.username) != 0 ? s->who.sub : NULL;
    char *frame = encode(json_pack("{s:s,s:I,s:s,s:s*,s:O,s:s}", "type",
                                   "message", "id", (json_int_t)id, "user",
                                   s->who.username, "user_id", user_id,
                                   "content", content, "timestamp", ts));
    cbx_result rc = save_and_send(group, id, frame);
    free(frame);
    if (rc != CBX_OK)
        refuse_send(s, rc);
}

/* ---- /presence --------------------------------------------------------- */

static int by_id(const struct online_user *a, const struct online_user *b) {
    return strcmp(a->id, b->id);
}

/* Everyone on /presence hears it (the changed user's sockets too). */
static void broadcast_status(const struct online_user *u, const char *status) {
    char *frame = status_frame(u, status);
    if (frame)
        CBX(cbx_group_send(server.hub, "presence", CBX_JSON,
                           (const uint8_t *)frame, strlen(frame), 0, NULL));
    free(frame);
}

/* `{"count":N,"type":"users","users":[{"id","status","username"}]}`, by id. */
static char *users_frame(void) {
    json_t *users = json_array();
    HASH_SORT(server.online, by_id);
    for (struct online_user *u = server.online; u; u = u->hh.next)
        json_array_append_new(users,
                              json_pack("{s:s,s:s,s:s}", "id", u->id, "status",
                                        u->status, "username", u->username));
    char *frame = encode(json_pack("{s:I,s:s,s:O}", "count",
                                   (json_int_t)HASH_COUNT(server.online), "type",
                                   "users", "users", users));
    json_decref(users);
    return frame;
}

/* A user's first socket makes them `online` for everyone, itself included;
 * the joiner then gets the `users` frame. Counted by user, not socket. */
static bool presence_join(struct session *s) {
    struct online_user *u;
    if (!CBX(cbx_group_add(server.hub, s->conn, "presence")))
        return false;
    HASH_FIND_STR(server.online, s->who.sub, u);
    if (!u) {
        u = calloc(1, sizeof *u);
        if (!u || !(u->id = strdup(s->who.sub)) ||
            !(u->username = strdup(s->who.username))) {
            if (u)
                free(u->id);
            free(u);
            return false;
        }
        u->status = "online";
        HASH_ADD_KEYPTR(hh, server.online, u->id, strlen(u->id), u);
    }
    s->joined = true;
    if (++u->sockets == 1)
        broadcast_status(u, "online");
    s->first_frame = users_frame();
    return s->first_frame != NULL;
}

/* The user's last socket makes them `offline`. */
static void presence_leave(struct session *s) {
    struct online_user *u;
    CBX(cbx_group_remove(server.hub, s->conn, "presence"));
    HASH_FIND_STR(server.online, s->who.sub, u);
    if (!u || --u->sockets > 0)
        return;
    HASH_DEL(server.online, u);
    if (!server.stopping)
        broadcast_status(u, "offline");
    free(u->id);
    free(u->username);
    free(u);
}

/* `{"type":"status","status":..}`: clients may say online, away, busy. */
static void presence_set(struct session *s, json_t *frame) {
    static const char *const statuses[] = {"online", "away", "busy"};
    const char *status = json_string_value(json_object_get(frame, "status"));
    struct online_user *u;
    if (!status) {
        refuse(s, "bad_request", "missing field: status");
        return;
    }
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(status, statuses[i]) != 0)
            continue;
        HASH_FIND_STR(server.online, s->who.sub, u);
        if (u) {
            u->status = statuses[i];
            broadcast_status(u, u->status);
        }
        return;
    }
    refuse(s, "bad_request", "status must be online, away or busy");
}

/* ---- /dm/{user_id} -------------------------------------------------------- */

/* The group a user's /dm sockets join: what they receive. */
static void inbox_group(const char *sub, char *out, size_t len) {
    snprintf(out, len, "dm-inbox:%s", sub);
}

/* The history-only group (no members) that keeps two users' conversation;
 * length-prefixed, so no two pairs share a name. */
static void pair_group(const char *a, const char *b, char *out, size_t len) {
    const char *lo = strcmp(a, b) <= 0 ? a : b, *hi = lo == a ? b : a;
    snprintf(out, len, "dm:%zu:%s|%s", strlen(lo), lo, hi);
}

/* Joins the caller's inbox; the `history` frame replays the last 50 DMs
 * between the caller and the peer, both directions. */
static bool dm_join(struct session *s) {
    char inbox[16 + MAX_SUB_BYTES], pair[32 + MAX_SUB_BYTES + MAX_ID_BYTES];
    inbox_group(s->who.sub, inbox, sizeof inbox);
    pair_group(s->who.sub, s->target, pair, sizeof pair);
    s->first_frame = history_frame(pair);
    return s->first_frame && CBX(cbx_group_add(server.hub, s->conn, inbox));
}

/* Saves the DM to the pair's history, then the same bytes go to the peer's
 * inbox and the sender's (its other tabs; `to` says where it went). */
static void dm_send(struct session *s, json_t *content) {
    char inbox[16 + MAX_ID_BYTES], pair[32 + MAX_SUB_BYTES + MAX_ID_BYTES];
    char ts[32];
    uint64_t id;
    pair_group(s->who.sub, s->target, pair, sizeof pair);
    timestamp(ts);
    if (!next_id(pair, &id)) {
        refuse(s, "unavailable", "history is not readable");
        return;
    }
    char *frame = encode(json_pack(
        "{s:s,s:I,s:s,s:s,s:s,s:O,s:s}", "type", "direct_message", "id",
        (json_int_t)id, "from", s->who.username, "from_id", s->who.sub, "to",
        s->target, "content", content, "timestamp", ts));
    cbx_result rc = save_and_send(pair, id, frame);
    if (rc == CBX_OK) {
        inbox_group(s->target, inbox, sizeof inbox);
        CBX(cbx_group_send(server.hub, inbox, CBX_JSON, (const uint8_t *)frame,
                           strlen(frame), 0, NULL));
        if (strcmp(s->target, s->who.sub) != 0) {
            inbox_group(s->who.sub, inbox, sizeof inbox);
            CBX(cbx_group_send(server.hub, inbox, CBX_JSON,
                               (const uint8_t *)frame, strlen(frame), 0, NULL));
        }
    } else {
        refuse_send(s, rc);
    }
    free(frame);
}

/* ---- client frames ---------------------------------------------------- */

/* The text of a message frame: `content`, or the tutorial's `message`. */
static json_t *content_of(struct session *s, json_t *frame) {
    json_t *content = json_object_get(frame, "content");
    if (!content)
        content = json_object_get(frame, "message");
    if (!content)
        refuse(s, "bad_request", "missing field: content");
    else if (!json_is_string(content))
        refuse(s, "bad_request", "content must be a string");
    else if (json_string_length(content) == 0)
        refuse(s, "bad_request", "content is empty");
    else
        return content;
    return NULL;
}

/* One complete text message from the client: parse, find its type, act. */
static void handle_text(struct session *s, const unsigned char *text, size_t len) {
    json_t *frame = json_loadb((const char *)text, len,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    const char *type = NULL;
    json_t *content;
    if (!frame) {
        refuse(s, "bad_request", "not JSON");
        return;
    }
    json_t *type_value = json_object_get(frame, "type");
    if (!json_is_object(frame))
        refuse(s, "bad_request", "expected a JSON object");
    else if (type_value && !json_is_string(type_value))
        refuse(s, "bad_request", "type must be a string");
    else if (!type_value && !json_object_get(frame, "message"))
        refuse(s, "bad_request", "missing field: type");
    else
        type = type_value ? json_string_value(type_value) : "message";

    if (!type) {
        /* refused above */
    } else if (s->endpoint == CHAT && strcmp(type, "message") == 0) {
        if ((content = content_of(s, frame)))
            chat_say(s, content);
    } else if (s->endpoint == DM && strcmp(type, "message") == 0) {
        if ((content = content_of(s, frame)))
            dm_send(s, content);
    } else if (s->endpoint == PRESENCE && strcmp(type, "status") == 0) {
        presence_set(s, frame);
    } else {
        char detail[64];
        snprintf(detail, sizeof detail, "unknown frame type \"%.40s\"", type);
        refuse(s, "unknown_type", detail);
    }
    json_decref(frame);
}

/* ---- sockets ------------------------------------------------------------ */

/* Writes one WebSocket frame. lws wants LWS_PRE free bytes before the
 * payload for the frame header, so the hub's bytes are copied once into
 * the server's write buffer. A write the socket cannot take whole is
 * buffered by lws (and lws_partial_buffered says so). */
static bool write_frame(struct lws *wsi, const void *data, size_t len, bool binary) {
    if (LWS_PRE + len > server.out_cap) {
        unsigned char *bigger = realloc(server.out, LWS_PRE + len);
        if (!bigger)
            return false;
        server.out = bigger;
        server.out_cap = LWS_PRE + len;
    }
    memcpy(server.out + LWS_PRE, data, len);
    int written = lws_write(wsi, server.out + LWS_PRE, len,
                            binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    if (server.out_cap > MAX_KEPT_OUT_BYTES) {
        /* A large history frame passed: do not keep its buffer. */
        free(server.out);
        server.out = NULL;
        server.out_cap = 0;
    }
    return written >= (int)len;
}

/* ---- outboxes ------------------------------------------------------------ */

/* Frees every message an outbox holds and its ring. */
static void outbox_clear(struct outbox *o) {
    for (size_t i = 0; i < o->len; i++)
        cbx_message_free(o->ring[(o->head + i) % o->cap]);
    free(o->ring);
    memset(o, 0, sizeof *o);
}

/* Appends a message the outbox now owns; false when out of memory (the
 * message is freed). */
static bool outbox_push(struct outbox *o, cbx_message *m, size_t len) {
    if (o->len == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        cbx_message **ring = malloc(cap * sizeof *ring);
        if (!ring) {
            cbx_message_free(m);
            return false;
        }
        for (size_t i = 0; i < o->len; i++)
            ring[i] = o->ring[(o->head + i) % o->cap];
        free(o->ring);
        o->ring = ring;
        o->head = 0;
        o->cap = cap;
    }
    o->ring[(o->head + o->len) % o->cap] = m;
    o->len++;
    o->bytes += len;
    return true;
}

/* Takes the oldest message (the caller frees it); NULL when empty. An
 * outbox that empties gives its ring back: an idle socket keeps none. */
static cbx_message *outbox_pop(struct outbox *o) {
    if (o->len == 0)
        return NULL;
    cbx_message *m = o->ring[o->head];
    size_t len = 0;
    cbx_message_data(m, &len);
    o->head = (o->head + 1) % o->cap;
    o->len--;
    o->bytes -= len;
    if (o->len == 0)
        outbox_clear(o);
    return m;
}

/* A message the hub handed over for `s`: into its outbox, within the
 * bound (an empty outbox takes one message of any size, as the hub's
 * queue does). Past it the socket is a slow consumer: it gets what the
 * outbox holds, then 4008, and nothing more. */
static void deliver(struct session *s, cbx_message *m) {
    size_t len = 0;
    cbx_message_data(m, &len);
    if (s->slow || (s->out.len > 0 && s->out.bytes + len > server.queue_max_bytes)) {
        cbx_message_free(m);
        if (!s->slow) {
            s->slow = true;
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_SECS);
        }
        return;
    }
    if (!outbox_push(&s->out, m, len)) {
        fprintf(stderr, "chat-server: out of memory for an outbox\n");
        s->slow = true;
    }
}

/* The socket's outbox is out and the hub closed its connection (or the
 * outbox overflowed): 4008 for a slow consumer, 1001 otherwise. Returns
 * -1, which makes lws send the close. */
static int close_for_hub(struct session *s) {
    cbx_close_code code = CBX_CLOSE_NONE;
    uint32_t host_code = 0;
    char *text = NULL;
    unsigned short status = 1001;
    const char *reason = "server shutting down";
    if (s->slow ||
        (CBX(cbx_conn_close_reason(server.hub, s->conn, &code, &host_code, &text)) &&
         code == CBX_CLOSE_SLOW_CONSUMER)) {
        status = 4008;
        reason = "too slow: outbound queue full";
    }
    cbx_string_free(text);
    lws_close_reason(s->wsi, (enum lws_close_status)status,
                     (unsigned char *)reason, strlen(reason));
    return -1;
}

/* LWS_CALLBACK_SERVER_WRITEABLE: the first frame, then the outbox, until
 * it is empty (on_ready asks again when the hub hands over more) or until
 * a write did not go out whole. lws keeps the rest of that write and says
 * so with lws_partial_buffered() (no syscall); it calls back once the
 * socket drained, and writing resumes where it stopped. */
static int write_queued(struct session *s) {
    if (s->choked) /* it drained: no more grace timeout (see deliver) */
        lws_set_timeout(s->wsi, NO_PENDING_TIMEOUT, 0);
    s->choked = false;
    if (s->first_frame) {
        bool written = write_frame(s->wsi, s->first_frame,
                                   strlen(s->first_frame), false);
        free(s->first_frame);
        s->first_frame = NULL;
        if (!written)
            return -1;
    }
    for (int n = 0; n < DRAIN_MAX; n++) {
        if (lws_partial_buffered(s->wsi)) {
            s->choked = true;
            /* Closing, and stuck again: the grace period starts over. */
            if (s->hub_closed || s->slow)
                lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_SECS);
            lws_callback_on_writable(s->wsi);
            return 0;
        }
        cbx_message *m = outbox_pop(&s->out);
        if (!m)
            return s->hub_closed || s->slow ? close_for_hub(s) : 0;
        size_t len = 0;
        const uint8_t *data = cbx_message_data(m, &len);
        bool written = write_frame(s->wsi, data, len,
                                   cbx_message_kind(m) == CBX_BINARY);
        cbx_message_free(m);
        if (!written)
            return -1;
    }
    /* More may be queued: come back after the other sockets had a turn. */
    lws_callback_on_writable(s->wsi);
    return 0;
}

/* LWS_CALLBACK_CLOSED (also for every socket when the server stops): the
 * endpoint's leave, then the connection and the session's memory. */
static void close_session(struct session *s) {
    if (!s->open) {
        identity_clear(&s->who);
        return;
    }
    if (s->joined && s->endpoint == CHAT)
        chat_leave(s);
    else if (s->joined && s->endpoint == PRESENCE)
        presence_leave(s);
    HASH_DEL(server.sessions, s);
    CBX(cbx_conn_close(server.hub, s->conn));
    s->open = false;
    identity_clear(&s->who);
    outbox_clear(&s->out);
    free(s->first_frame);
    free(s->rx);
    s->first_frame = NULL;
    s->rx = NULL;
}

/* LWS_CALLBACK_ESTABLISHED: a channelbox connection for the socket, then
 * the endpoint's join. */
static int open_session(struct lws *wsi, struct session *s) {
    s->wsi = wsi;
    /* The upgrade was admitted in LWS_CALLBACK_HTTP_CONFIRM_UPGRADE; lws
     * gives the socket a fresh session after it, so read the request again. */
    if (admit(wsi, s) != 0)
        return -1;
    if (!CBX(cbx_conn_open(server.hub, s->who.sub, 0, &s->conn))) {
        identity_clear(&s->who);
        return -1;
    }
    s->open = true;
    HASH_ADD(hh, server.sessions, conn, sizeof s->conn, s);
    bool joined = s->endpoint == CHAT       ? chat_join(s)
                  : s->endpoint == PRESENCE ? presence_join(s)
                                            : dm_join(s);
    if (!joined) {
        close_session(s); /* undoes what the join did */
        return -1;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* A whole client message: JSON text, or a refused binary one. */
static int handle_message(struct session *s, const void *data, size_t len) {
    if (lws_frame_is_binary(s->wsi))
        refuse(s, "bad_request", "frames are JSON text");
    else
        handle_text(s, data, len);
    return 0;
}

/* LWS_CALLBACK_RECEIVE: collects a message's fragments; a message over
 * --max-frame-bytes closes the socket with 1009. */
static int receive(struct session *s, const void *in, size_t len) {
    if (s->rx_len + len > server.max_frame_bytes) {
        static const char reason[] = "frame too large";
        lws_close_reason(s->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)reason, sizeof reason - 1);
        return -1;
    }
    /* Most messages come in one piece: handled in place, no copy. */
    if (s->rx_len == 0 && lws_is_final_fragment(s->wsi))
        return handle_message(s, in, len);
    unsigned char *grown = realloc(s->rx, s->rx_len + len);
    if (!grown)
        return -1;
    s->rx = grown;
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!lws_is_final_fragment(s->wsi))
        return 0;
    int rc = handle_message(s, s->rx, s->rx_len);
    free(s->rx); /* an idle socket keeps no buffer */
    s->rx = NULL;
    s->rx_len = 0;
    return rc;
}

/* Answers an upgrade with 401 or 404 and the Rust hub's JSON body. The
 * response is written whole, by hand: at this point lws has not read the
 * request's HTTP version yet, and its helpers would answer HTTP/1.0. */
static int refuse_upgrade(struct lws *wsi, unsigned status) {
    bool unauthorized = status == HTTP_STATUS_UNAUTHORIZED;
    const char *body = unauthorized
        ? "{\"error\":\"Unauthorized\",\"detail\":\"a valid token is required\"}"
        : "{\"error\":\"Not Found\",\"detail\":\"bad room or user id in the path\"}";
    char response[LWS_PRE + 512];
    int n = snprintf(response + LWS_PRE, sizeof response - LWS_PRE,
                     "HTTP/1.1 %s\r\n%scontent-type: application/json\r\n"
                     "content-length: %zu\r\nconnection: close\r\n\r\n%s",
                     unauthorized ? "401 Unauthorized" : "404 Not Found",
                     unauthorized ? "www-authenticate: Bearer\r\n" : "",
                     strlen(body), body);
    lws_write(wsi, (unsigned char *)response + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_FINAL);
    return 1; /* rejected, with our own answer */
}

/* The protocol every HTTP request and WebSocket of the server speaks. */
static int on_socket(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len) {
    struct session *s = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        unsigned status = admit(wsi, NULL);
        return status == 0 ? 0 : refuse_upgrade(wsi, status);
    }
    case LWS_CALLBACK_HTTP:
        /* No HTTP API here: WebSocket endpoints only. */
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
        return -1;
    case LWS_CALLBACK_ESTABLISHED:
        return open_session(wsi, s);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return write_queued(s);
    case LWS_CALLBACK_RECEIVE:
        return receive(s, in, len);
    case LWS_CALLBACK_CLOSED:
        close_session(s);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* The hub's ready fd, adopted into lws' poll loop: readable while some
 * connection has something queued or was closed. One call hands over
 * what every ready connection holds: entry i is conns[i] and messages[i],
 * a NULL message saying that the hub closed that connection. */
static int on_ready(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len) {
    if (reason != LWS_CALLBACK_RAW_RX_FILE)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    enum { BATCH = 256 };
    uint64_t conns[BATCH];
    cbx_message *messages[BATCH];
    /* The fd stays readable until the hub has handed over everything. */
    for (;;) {
        size_t n = 0;
        cbx_result rc = cbx_hub_recv_ready(server.hub, conns, messages, BATCH, &n);
        if (rc == CBX_EMPTY)
            return 0;
        if (!checked(rc, "cbx_hub_recv_ready"))
            return 0;
        struct session *s = NULL;
        for (size_t i = 0; i < n; i++) {
            /* A connection's entries come in a row: one lookup a run. */
            if (!s || s->conn != conns[i])
                HASH_FIND(hh, server.sessions, &conns[i], sizeof conns[i], s);
            if (!s) {
                cbx_message_free(messages[i]); /* closed since; NULL is fine */
                continue;
            }
            if (messages[i]) {
                deliver(s, messages[i]);
            } else {
                /* If the socket still takes nothing, it gets
                 * CLOSE_GRACE_SECS for the rest and its close frame. */
                s->hub_closed = true;
                lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_SECS);
            }
            lws_callback_on_writable(s->wsi);
        }
    }
}

/* SIGINT and SIGTERM, as a signalfd in the same loop: the loop stops. */
static int on_signal(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len) {
    if (reason != LWS_CALLBACK_RAW_RX_FILE)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    struct signalfd_siginfo info;
    if (read(lws_get_socket_fd(wsi), &info, sizeof info) == sizeof info)
        server.stopping = true;
    return 0;
}

static const struct lws_protocols protocols[] = {
    {.name = "chat", .callback = on_socket,
     .per_session_data_size = sizeof(struct session), .rx_buffer_size = 4096},
    {.name = "channelbox-ready", .callback = on_ready},
    {.name = "signals", .callback = on_signal},
    {0}, /* the end */
};

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *to) {
    fprintf(to,
            "usage: chat-server [--port N] [--jwt-secret S] [--max-frame-bytes N]\n"
            "                   [--queue-max-bytes N]\n"
            "  --port N             listen on 127.0.0.1:N (default 8000; 0 picks one)\n"
            "  --jwt-secret S       HS256 secret (or CHANNELBOX_JWT_SECRET)\n"
            "  --max-frame-bytes N  largest client message (default 65536; 1009 above)\n"
            "  --queue-max-bytes N  a socket's outbound queue (default 1048576; 4008 above)\n");
}

static bool parse_size(const char *text, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || v > SIZE_MAX || text[0] == '-')
        return false;
    *out = (size_t)v;
    return true;
}

/* Adopts `fd` into lws' poll loop under `protocol`; lws closes it at the end. */
static bool adopt(struct lws_vhost *vhost, int fd, const char *protocol) {
    lws_sock_file_fd_type desc;
    desc.filefd = fd;
    if (fd >= 0 && lws_adopt_descriptor_vhost(vhost, LWS_ADOPT_RAW_FILE_DESC,
                                              desc, protocol, NULL))
        return true;
    if (fd >= 0)
        close(fd);
    fprintf(stderr, "chat-server: cannot watch the %s fd\n", protocol);
    return false;
}

int main(int argc, char **argv) {
    static const struct option options[] = {
        {"port", required_argument, NULL, 'p'},
        {"jwt-secret", required_argument, NULL, 's'},
        {"max-frame-bytes", required_argument, NULL, 'f'},
        {"queue-max-bytes", required_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    size_t port = 8000;
    int status = 1, opt;
    struct lws_context *context = NULL;
    sigset_t signals;

    server.secret = getenv("CHANNELBOX_JWT_SECRET");
    server.max_frame_bytes = 64 * 1024;
    server.queue_max_bytes = 1 << 20;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case 'p': ok = parse_size(optarg, &port) && port <= 65535; break;
        case 's': server.secret = optarg; break;
        case 'f': ok = parse_size(optarg, &server.max_frame_bytes) && server.max_frame_bytes > 0; break;
        case 'q': ok = parse_size(optarg, &server.queue_max_bytes); break;
        case 'h': usage(stdout); return 0;
        default: ok = false;
        }
        if (!ok) {
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !server.secret || !*server.secret) {
        fprintf(stderr, "chat-server: a JWT secret is required "
                        "(--jwt-secret or CHANNELBOX_JWT_SECRET)\n");
        usage(stderr);
        return 2;
    }

    /* Signals are blocked before the hub starts its threads (they inherit
     * the mask), so they arrive only through the signalfd. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &signals, NULL) != 0) {
        perror("chat-server: sigprocmask");
        return 1;
    }

    /* History: the Rust hub's defaults. The same bound on the hub's queue
     * (between two turns of the loop) and on each outbox makes slow
     * consumers close (4008) instead of holding memory or the room. */
    char config[160];
    snprintf(config, sizeof config,
             "{\"history_max_messages\":10000,\"history_max_bytes\":1048576,"
             "\"queue_max_bytes\":%zu,\"slow_consumer\":\"disconnect\"}",
             server.queue_max_bytes);
    if (!CBX(cbx_hub_new(config, &server.hub)))
        return 1;
    /* Asked for before any connection opens, so every one is listed. */
    int ready_fd = cbx_hub_ready_fd(server.hub);
    if (ready_fd < 0) {
        checked(CBX_INVALID_ARGUMENT, "cbx_hub_ready_fd");
        goto out;
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = (int)port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    /* lws checks UTF-8 in text frames (1007 otherwise), like tungstenite. */
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    context = lws_create_context(&info);
    struct lws_vhost *vhost = context ? lws_get_vhost_by_name(context, "default") : NULL;
    if (!vhost) {
        fprintf(stderr, "chat-server: cannot listen on 127.0.0.1:%zu\n", port);
        goto out;
    }
    /* The ready fd belongs to the hub, which closes it: lws gets a dup. */
    if (!adopt(vhost, dup(ready_fd), "channelbox-ready") ||
        !adopt(vhost, signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK), "signals"))
        goto out;

    printf("chat-server: channelbox %s, listening on 127.0.0.1:%d\n",
           cbx_version(), lws_get_vhost_listen_port(vhost));
    fflush(stdout);
    while (!server.stopping)
        if (lws_service(context, 0) < 0)
            break;
    status = server.stopping ? 0 : 1;

out:
    /* Closes every socket (LWS_CALLBACK_CLOSED frees each session) and the
     * adopted fds; only then the hub, which nothing uses any more. */
    server.stopping = true;
    if (context)
        lws_context_destroy(context);
    struct online_user *u, *tmp;
    HASH_ITER(hh, server.online, u, tmp) {
        HASH_DEL(server.online, u);
        free(u->id);
        free(u->username);
        free(u);
    }
    free(server.out);
    cbx_hub_free(server.hub);
    return status;
}

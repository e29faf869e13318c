/*
 * test_control.c - control-plane frames: encoding, hostile decoding, sockets.
 */
#include "ringmaster/control.h"

#include "mp_body.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------- */

/* Frame a raw msgpack body: 4-byte big-endian length, then the bytes. */
static size_t frame(char *out, const void *body, size_t n)
{
    out[0] = (char)(n >> 24);
    out[1] = (char)(n >> 16);
    out[2] = (char)(n >> 8);
    out[3] = (char)n;
    memcpy(out + 4, body, n);
    return n + 4;
}

/* Frame the body into `out` (caller-sized) and release it. */
static size_t body_frame(body_t *b, char *out)
{
    size_t n = frame(out, b->sb.data, b->sb.size);
    msgpack_sbuffer_destroy(&b->sb);
    return n;
}

static rm_ctl_msg_t round_trip(const rm_ctl_msg_t *in)
{
    char buf[4096];
    ssize_t n = rm_ctl_encode(in, buf, sizeof(buf));
    cr_assert_gt(n, 4, "encode %s: %zd", rm_ctl_type_name(in->type), n);
    rm_ctl_msg_t out;
    memset(&out, 0x5A, sizeof(out));
    ssize_t used = rm_ctl_decode(buf, (size_t)n, &out);
    cr_assert_eq(used, n, "decode %s used %zd of %zd bytes", rm_ctl_type_name(in->type), used, n);
    return out;
}

/* ---- round trips ---------------------------------------------------------- */

Test(control, hello_round_trip)
{
    rm_ctl_msg_t in = {.type = RM_CTL_HELLO,
                       .version = RM_CTL_VERSION,
                       .pid = 31337,
                       .lane = 12,
                       .gil_enabled = true};
    strcpy(in.python, "3.13.0");
    strcpy(in.mode, "subinterpreters");
    rm_ctl_msg_t out = round_trip(&in);
    cr_assert_eq(out.type, RM_CTL_HELLO);
    cr_assert_eq(out.version, RM_CTL_VERSION);
    cr_assert_eq(out.pid, 31337);
    cr_assert_eq(out.lane, 12);
    cr_assert_eq(out.gil_enabled, true);
    cr_assert_str_eq(out.python, "3.13.0");
    cr_assert_str_eq(out.mode, "subinterpreters");
    cr_assert_eq(out.served, 0, "fields a message lacks are zero");
    cr_assert_str_eq(out.text, "");

    in.gil_enabled = false;
    in.pid = -1;
    out = round_trip(&in);
    cr_assert_eq(out.gil_enabled, false);
    cr_assert_eq(out.pid, -1);
}

Test(control, simple_messages_round_trip)
{
    rm_ctl_type_t types[] = {RM_CTL_READY, RM_CTL_STOP};
    for (size_t i = 0; i < 2; i++) {
        rm_ctl_msg_t in = {.type = types[i]};
        rm_ctl_msg_t out = round_trip(&in);
        cr_assert_eq(out.type, types[i]);
        cr_assert_eq(out.pid, 0);
    }
}

Test(control, ready_round_trip_with_and_without_state)
{
    /* A bare ready, as workers before the modes sent it: nothing else set. */
    rm_ctl_msg_t in = {.type = RM_CTL_READY};
    char bare[64];
    ssize_t bare_len = rm_ctl_encode(&in, bare, sizeof(bare));
    cr_assert_eq(bare_len, 4 + 1 + 2 + 6, "{\"t\": \"ready\"}: %zd bytes", bare_len);
    rm_ctl_msg_t out = round_trip(&in);
    cr_assert_eq(out.type, RM_CTL_READY);
    cr_assert_str_eq(out.mode, "", "a bare ready has no mode");
    cr_assert_eq(out.gil_enabled, false);

    /* The mode run and the GIL after the import. */
    in.gil_enabled = true;
    strcpy(in.mode, "free-threaded");
    out = round_trip(&in);
    cr_assert_eq(out.type, RM_CTL_READY);
    cr_assert_str_eq(out.mode, "free-threaded");
    cr_assert_eq(out.gil_enabled, true);
    in.gil_enabled = false;
    strcpy(in.mode, "subinterpreters");
    out = round_trip(&in);
    cr_assert_str_eq(out.mode, "subinterpreters");
    cr_assert_eq(out.gil_enabled, false);
}

/* What a newer or older peer sends decodes: a ready carrying the state keys
 * built by hand, in another order, with a key this side does not know. */
Test(control, ready_state_from_another_encoder)
{
    body_t b;
    char buf[256];
    body_init(&b);
    msgpack_pack_map(&b.pk, 4);
    put_str(&b, "gil");
    msgpack_pack_false(&b.pk);
    put_str(&b, "future");
    msgpack_pack_uint32(&b.pk, 7);
    put_str(&b, "mode");
    put_str(&b, "gil");
    put_str(&b, "t");
    put_str(&b, "ready");
    size_t n = body_frame(&b, buf);
    rm_ctl_msg_t out;
    cr_assert_eq(rm_ctl_decode(buf, n, &out), (ssize_t)n);
    cr_assert_eq(out.type, RM_CTL_READY);
    cr_assert_str_eq(out.mode, "gil");
    cr_assert_eq(out.gil_enabled, false);
}

Test(control, fatal_and_heartbeat_round_trip)
{
    rm_ctl_msg_t in = {.type = RM_CTL_FATAL};
    strcpy(in.text, "cannot import app: ModuleNotFoundError: No module named 'flask'\n\"quoted\"");
    rm_ctl_msg_t out = round_trip(&in);
    cr_assert_eq(out.type, RM_CTL_FATAL);
    cr_assert_str_eq(out.text, in.text);

    rm_ctl_msg_t hb = {.type = RM_CTL_HEARTBEAT, .served = (1ULL << 40) + 3};
    out = round_trip(&hb);
    cr_assert_eq(out.type, RM_CTL_HEARTBEAT);
    cr_assert_eq(out.served, (1ULL << 40) + 3);
    hb.served = UINT64_MAX;
    cr_assert_eq(round_trip(&hb).served, UINT64_MAX);
}

Test(control, type_names)
{
    cr_assert_str_eq(rm_ctl_type_name(RM_CTL_HELLO), "hello");
    cr_assert_str_eq(rm_ctl_type_name(RM_CTL_READY), "ready");
    cr_assert_str_eq(rm_ctl_type_name(RM_CTL_FATAL), "fatal");
    cr_assert_str_eq(rm_ctl_type_name(RM_CTL_STOP), "stop");
    cr_assert_str_eq(rm_ctl_type_name(RM_CTL_HEARTBEAT), "heartbeat");
    cr_assert_str_eq(rm_ctl_type_name(RM_CTL_UNKNOWN), "unknown");
    cr_assert_str_eq(rm_ctl_type_name((rm_ctl_type_t)99), "unknown");
}

Test(control, encode_reports_lack_of_room_and_bad_types)
{
    rm_ctl_msg_t in = {.type = RM_CTL_FATAL};
    memset(in.text, 'e', sizeof(in.text) - 1);
    char buf[4096];
    ssize_t full = rm_ctl_encode(&in, buf, sizeof(buf));
    cr_assert_gt(full, 1024);
    for (size_t cap = 0; cap < (size_t)full; cap += 97)
        cr_assert_eq(rm_ctl_encode(&in, buf, cap), -ENOSPC, "cap %zu", cap);
    cr_assert_eq(rm_ctl_encode(&in, buf, (size_t)full - 1), -ENOSPC);
    cr_assert_eq(rm_ctl_encode(&in, buf, (size_t)full), full);

    rm_ctl_msg_t unknown = {.type = RM_CTL_UNKNOWN};
    cr_assert_eq(rm_ctl_encode(&unknown, buf, sizeof(buf)), -EINVAL);
}

Test(control, two_frames_back_to_back)
{
    rm_ctl_msg_t a = {.type = RM_CTL_HEARTBEAT, .served = 5};
    rm_ctl_msg_t b = {.type = RM_CTL_STOP};
    char buf[256];
    ssize_t na = rm_ctl_encode(&a, buf, sizeof(buf));
    ssize_t nb = rm_ctl_encode(&b, buf + na, sizeof(buf) - (size_t)na);
    cr_assert_gt(na, 0);
    cr_assert_gt(nb, 0);
    rm_ctl_msg_t out;
    cr_assert_eq(rm_ctl_decode(buf, (size_t)(na + nb), &out), na);
    cr_assert_eq(out.type, RM_CTL_HEARTBEAT);
    cr_assert_eq(rm_ctl_decode(buf + na, (size_t)nb, &out), nb);
    cr_assert_eq(out.type, RM_CTL_STOP);
}

/* ---- hostile input -------------------------------------------------------- */

Test(control, incomplete_frames_need_more_bytes)
{
    rm_ctl_msg_t in = {.type = RM_CTL_HELLO, .pid = 1};
    strcpy(in.mode, "gil");
    char buf[512];
    ssize_t n = rm_ctl_encode(&in, buf, sizeof(buf));
    rm_ctl_msg_t out;
    for (ssize_t len = 0; len < n; len++)
        cr_assert_eq(rm_ctl_decode(buf, (size_t)len, &out), 0, "prefix of %zd bytes", len);
}

Test(control, oversized_or_empty_frames_are_refused_early)
{
    rm_ctl_msg_t out;
    /* Just the prefix: the decoder must refuse without waiting for 64 KiB. */
    const char huge[4] = {0, 1, 0, 1}; /* 65537 */
    cr_assert_eq(rm_ctl_decode(huge, 4, &out), -EBADMSG);
    const char giant[4] = {(char)0xff, (char)0xff, (char)0xff, (char)0xff};
    cr_assert_eq(rm_ctl_decode(giant, 4, &out), -EBADMSG);
    const char empty[4] = {0, 0, 0, 0};
    cr_assert_eq(rm_ctl_decode(empty, 4, &out), -EBADMSG);
}

static void expect_bad_body(const void *body, size_t n, const char *what)
{
    char buf[256];
    cr_assert_leq(n + 4, sizeof(buf));
    size_t len = frame(buf, body, n);
    rm_ctl_msg_t out;
    cr_expect_eq(rm_ctl_decode(buf, len, &out), -EBADMSG, "%s accepted", what);
}

/* A literal body, its length counted by the compiler. */
#define BAD(lit, what) expect_bad_body(lit, sizeof(lit) - 1, what)

Test(control, malformed_bodies_are_ebadmsg)
{
    BAD("\xc1", "reserved byte 0xc1");
    BAD("\x92\x01\x02", "an array instead of a map");
    BAD("\xa2hi", "a bare string");
    BAD("\x81\x01\xa4stop", "an integer key");
    BAD("\x81\xa1t\x01", "a type that is not a string");
    BAD("\x80", "a map without a type");
    BAD("\x81\xa1t\xa4stop\x00", "trailing bytes after the map");
    BAD("\x82\xa1t\xa4stop", "a map with a missing value");
    BAD("\x81\xa1t\xdb\x00\x00\x10\x00stop", "a str32 longer than the frame");
    /* Claims 4 billion entries in a few bytes: must be refused, not allocated. */
    BAD("\xdf\xff\xff\xff\xff\xa1t\xa4stop", "a map32 of 2^32-1 entries");
    BAD("\x81\xa1x\xdd\xff\xff\xff\xff", "an array32 of 2^32-1 entries");
    /* Deep nesting within the size limit. */
    char deep[200];
    deep[0] = (char)0x81;
    deep[1] = (char)0xa1;
    deep[2] = 'x';
    memset(deep + 3, 0x91, sizeof(deep) - 4);
    deep[sizeof(deep) - 1] = 0x01;
    expect_bad_body(deep, sizeof(deep), "a map without a type holding deep arrays");
}

Test(control, values_of_the_wrong_type_are_ebadmsg)
{
    struct {
        const char *key;
        int kind; /* 0: string, 1: negative int, 2: too big for 32 bits, 3: map */
    } cases[] = {{"pid", 0}, {"lane", 1},   {"v", 2},    {"pid", 2}, {"served", 1},
                 {"gil", 0}, {"python", 1}, {"mode", 3}, {"msg", 1}, {"lane", 2}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        body_t b;
        body_init(&b);
        msgpack_pack_map(&b.pk, 2);
        put_str(&b, "t");
        put_str(&b, "hello");
        put_str(&b, cases[i].key);
        switch (cases[i].kind) {
        case 0:
            put_str(&b, "nope");
            break;
        case 1:
            msgpack_pack_int64(&b.pk, -5);
            break;
        case 2:
            msgpack_pack_uint64(&b.pk, 1ULL << 33);
            break;
        default:
            msgpack_pack_map(&b.pk, 0);
            break;
        }
        char buf[256];
        size_t len = body_frame(&b, buf);
        rm_ctl_msg_t out;
        cr_expect_eq(rm_ctl_decode(buf, len, &out), -EBADMSG, "case %zu: key %s kind %d", i,
                     cases[i].key, cases[i].kind);
    }
}

Test(control, unknown_keys_and_types_are_ignored)
{
    body_t b;
    body_init(&b);
    msgpack_pack_map(&b.pk, 4);
    put_str(&b, "future");
    msgpack_pack_array(&b.pk, 3);
    msgpack_pack_nil(&b.pk);
    msgpack_pack_double(&b.pk, 1.5);
    msgpack_pack_map(&b.pk, 1);
    put_str(&b, "x");
    msgpack_pack_bin_with_body(&b.pk, "\0\1\2", 3);
    put_str(&b, "t");
    put_str(&b, "heartbeat");
    put_str(&b, "served");
    msgpack_pack_uint64(&b.pk, 77);
    put_str(&b, "zz");
    msgpack_pack_int64(&b.pk, -1);
    char buf[256];
    size_t len = body_frame(&b, buf);
    rm_ctl_msg_t out;
    cr_assert_eq(rm_ctl_decode(buf, len, &out), (ssize_t)len);
    cr_assert_eq(out.type, RM_CTL_HEARTBEAT);
    cr_assert_eq(out.served, 77);

    body_init(&b);
    msgpack_pack_map(&b.pk, 1);
    put_str(&b, "t");
    put_str(&b, "reload-from-the-future");
    len = body_frame(&b, buf);
    cr_assert_eq(rm_ctl_decode(buf, len, &out), (ssize_t)len, "a newer message still frames");
    cr_assert_eq(out.type, RM_CTL_UNKNOWN);
}

Test(control, long_strings_are_truncated_and_terminated)
{
    static char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    body_t b;
    body_init(&b);
    msgpack_pack_map(&b.pk, 4);
    put_str(&b, "t");
    put_str(&b, "hello");
    put_str(&b, "msg");
    put_str(&b, big);
    put_str(&b, "mode");
    put_str(&b, "a-mode-name-much-longer-than-twenty-four-bytes");
    /* 20 two-byte characters: a cut at 31 bytes would split one. */
    put_str(&b, "python");
    put_str(&b, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    static char buf[8192];
    size_t len = body_frame(&b, buf);
    rm_ctl_msg_t out;
    cr_assert_eq(rm_ctl_decode(buf, len, &out), (ssize_t)len);
    cr_assert_eq(strlen(out.text), sizeof(out.text) - 1);
    cr_assert_eq(out.text[sizeof(out.text) - 1], '\0');
    cr_assert_eq(strlen(out.mode), sizeof(out.mode) - 1);
    cr_assert_eq(strncmp(out.mode, "a-mode-name-much-longer", 23), 0);
    cr_assert_eq(strlen(out.python), 30, "cut at a character boundary, got %zu bytes",
                 strlen(out.python));
}

Test(control, unterminated_fields_are_not_overread)
{
    rm_ctl_msg_t in = {.type = RM_CTL_HELLO};
    memset(in.python, 'p', sizeof(in.python)); /* no NUL at all */
    memset(in.mode, 'm', sizeof(in.mode));
    rm_ctl_msg_t out = round_trip(&in);
    cr_assert_eq(strlen(out.python), sizeof(out.python) - 1);
    cr_assert_eq(strlen(out.mode), sizeof(out.mode) - 1);
}

/* Random and mutated input must come back as a frame or -EBADMSG or 0, and
 * never crash (this runs under ASan in the sanitizer build). */
Test(control, random_and_mutated_frames_do_not_crash)
{
    unsigned seed = 12345;
    char buf[300];
    rm_ctl_msg_t out;
    rm_ctl_msg_t in = {.type = RM_CTL_HELLO, .pid = 9, .lane = 3};
    strcpy(in.python, "3.11.2");
    strcpy(in.mode, "gil");
    char good[300];
    ssize_t good_len = rm_ctl_encode(&in, good, sizeof(good));
    cr_assert_gt(good_len, 0);

    for (int iter = 0; iter < 20000; iter++) {
        size_t len;
        if (iter % 2) {
            len = 4 + (size_t)rand_r(&seed) % (sizeof(buf) - 4);
            for (size_t i = 4; i < len; i++)
                buf[i] = (char)rand_r(&seed);
            frame(buf, buf + 4, len - 4);
        } else {
            memcpy(buf, good, (size_t)good_len);
            len = (size_t)good_len;
            int flips = 1 + rand_r(&seed) % 4;
            for (int f = 0; f < flips; f++)
                buf[4 + (size_t)rand_r(&seed) % (len - 4)] = (char)rand_r(&seed);
        }
        ssize_t r = rm_ctl_decode(buf, len, &out);
        cr_assert(r == -EBADMSG || r == 0 || (r > 4 && (size_t)r <= len), "iteration %d: %zd", iter,
                  r);
        if (r > 0) {
            cr_assert_eq(out.python[sizeof(out.python) - 1], '\0');
            cr_assert_eq(out.mode[sizeof(out.mode) - 1], '\0');
            cr_assert_eq(out.text[sizeof(out.text) - 1], '\0');
        }
    }
}

/* ---- sockets -------------------------------------------------------------- */

Test(control, send_and_receive_over_a_socketpair, .timeout = 10)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);

    rm_ctl_msg_t hello = {.type = RM_CTL_HELLO, .version = 1, .pid = getpid(), .lane = 2};
    strcpy(hello.python, "3.11.2");
    strcpy(hello.mode, "gil");
    rm_ctl_msg_t fatal = {.type = RM_CTL_FATAL};
    memset(fatal.text, 'f', sizeof(fatal.text) - 1);
    rm_ctl_msg_t stop = {.type = RM_CTL_STOP};
    cr_assert_eq(rm_ctl_send(sv[0], &hello), 0);
    cr_assert_eq(rm_ctl_send(sv[0], &fatal), 0);
    cr_assert_eq(rm_ctl_send(sv[0], &stop), 0);

    rm_ctl_msg_t out;
    cr_assert_eq(rm_ctl_recv_blocking(sv[1], &out), 0);
    cr_assert_eq(out.type, RM_CTL_HELLO);
    cr_assert_eq(out.pid, getpid());
    cr_assert_str_eq(out.mode, "gil");
    cr_assert_eq(rm_ctl_recv_blocking(sv[1], &out), 0);
    cr_assert_eq(out.type, RM_CTL_FATAL);
    cr_assert_eq(strlen(out.text), sizeof(out.text) - 1);
    cr_assert_eq(rm_ctl_recv_blocking(sv[1], &out), 0);
    cr_assert_eq(out.type, RM_CTL_STOP);

    /* End of stream between frames, then in the middle of one. */
    close(sv[0]);
    cr_assert_eq(rm_ctl_recv_blocking(sv[1], &out), -ECONNRESET);
    close(sv[1]);

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char buf[256];
    ssize_t n = rm_ctl_encode(&hello, buf, sizeof(buf));
    cr_assert_eq(write(sv[0], buf, (size_t)n - 3), n - 3);
    close(sv[0]);
    cr_assert_eq(rm_ctl_recv_blocking(sv[1], &out), -ECONNRESET);
    close(sv[1]);
}

Test(control, recv_refuses_an_oversized_prefix, .timeout = 10)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    const char prefix[4] = {0x7f, 0, 0, 0};
    cr_assert_eq(write(sv[0], prefix, 4), 4);
    rm_ctl_msg_t out;
    cr_assert_eq(rm_ctl_recv_blocking(sv[1], &out), -EBADMSG);
    close(sv[0]);
    close(sv[1]);
}

Test(control, send_to_a_closed_peer_is_an_error_not_sigpipe, .timeout = 10)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    close(sv[1]);
    rm_ctl_msg_t stop = {.type = RM_CTL_STOP};
    cr_assert_eq(rm_ctl_send(sv[0], &stop), -EPIPE);
    close(sv[0]);
}

Test(control, send_works_on_a_pipe, .timeout = 10)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    rm_ctl_msg_t hb = {.type = RM_CTL_HEARTBEAT, .served = 123};
    cr_assert_eq(rm_ctl_send(p[1], &hb), 0);
    rm_ctl_msg_t out;
    cr_assert_eq(rm_ctl_recv_blocking(p[0], &out), 0);
    cr_assert_eq(out.served, 123);
    close(p[0]);
    close(p[1]);
}

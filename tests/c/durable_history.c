/*
 * The durable history keys from C: "history_dir" keeps history on disk and
 * brings it back in the next hub on that directory (offsets, epoch,
 * payloads), "history_fsync" is a boolean, and a store file that cannot be
 * opened is refused with CBX_STORAGE, naming the file, leaving the
 * out-parameter alone.
 */

/* mkdtemp */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <unistd.h>

#include "check.h"

static char dir[] = "/tmp/cbx-durable-XXXXXX";
static char path[128];

static void history_comes_back_in_the_next_hub(void) {
    char config[256];
    snprintf(config, sizeof config,
             "{\"history_dir\": \"%s\", \"history_fsync\": false}", dir);
    cbx_hub *hub = NULL;
    REQUIRE_OK(cbx_hub_new(config, &hub));
    for (uint64_t i = 1; i <= 3; i++) {
        cbx_send_report r = {0, 0, 0, 0};
        REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("saved"),
                                  CBX_SAVE_HISTORY, &r));
        CHECK(r.offset == i);
    }
    char *before = NULL;
    REQUIRE_OK(cbx_history_json(hub, "g", 0, 0, &before));
    cbx_hub_free(hub);

    hub = NULL;
    REQUIRE_OK(cbx_hub_new(config, &hub));
    char *after = NULL;
    REQUIRE_OK(cbx_history_json(hub, "g", 0, 0, &after));
    /* Same epoch, offsets and payloads. */
    CHECK(strcmp(before, after) == 0);
    CHECK(strstr(after, "\"last_offset\":3") != NULL);
    cbx_send_report r = {0, 0, 0, 0};
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("more"),
                              CBX_SAVE_HISTORY, &r));
    CHECK(r.offset == 4);
    cbx_string_free(before);
    cbx_string_free(after);
    cbx_hub_free(hub);
}

static void bad_values_are_refused(void) {
    cbx_hub *hub = NULL;
    CHECK_RC(cbx_hub_new("{\"history_fsync\": 1}", &hub), CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_hub_new("{\"history_dir\": 7}", &hub), CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_hub_new("{\"history_dir\": \"a\\u0000b\"}", &hub),
             CBX_INVALID_ARGUMENT);
    CHECK(hub == NULL);
}

static void an_unopenable_store_is_refused_with_storage(void) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    for (int i = 0; i < 4096; i++) {
        fputs("garbage!", f);
    }
    fclose(f);
    char config[256];
    snprintf(config, sizeof config, "{\"history_dir\": \"%s\"}", dir);
    cbx_hub *hub = (cbx_hub *)0x1; /* must stay as it is */
    CHECK_RC(cbx_hub_new(config, &hub), CBX_STORAGE);
    CHECK(hub == (cbx_hub *)0x1);
    CHECK(strstr(cbx_last_error(), "history.redb") != NULL);
    CHECK(strcmp(cbx_result_name(CBX_STORAGE), "CBX_STORAGE") == 0);
}

int main(void) {
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/history.redb", dir);
    RUN(history_comes_back_in_the_next_hub);
    RUN(bad_values_are_refused);
    unlink(path);
    RUN(an_unopenable_store_is_refused_with_storage);
    unlink(path);
    rmdir(dir);
    return check_summary();
}

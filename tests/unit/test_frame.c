/* test_frame.c: one call to the service and the status of its reply (common/frame.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/frame.h"

static int status_of(const char *reply, char *line, size_t linelen)
{
	line[0] = '\0';
	return ps_msg_status(reply, strlen(reply), "the system service", line, linelen);
}

static void test_status(void **state)
{
	char line[128];

	(void)state;
	assert_int_equal(status_of("status 0\n\nbody", line, sizeof(line)), 0);
	assert_string_equal(line, "");
	assert_int_equal(
		status_of("status 7\nmessage only root opens sessions\n\n", line, sizeof(line)), 7);
	assert_string_equal(line, "only root opens sessions");
	assert_int_equal(status_of("status 6\n\n", line, sizeof(line)), 6);
	assert_string_equal(line, "the system service refused (code 6)");
}

static void test_status_malformed(void **state)
{
	static const char *const bad[] = {
		"", "\n", "status 8\n\n", "status x\n\n", "message no status\n\n", "status -1\n\n"};
	char line[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(status_of(bad[i], line, sizeof(line)), 6);
		assert_string_equal(line, "the answer of the system service is malformed");
	}
}

/* A call over a socket pair: what one side sends, the other receives; then the reply. */
static void test_call(void **state)
{
	static const char msg[] = "op token\nservice s\n\n", answer[] = "status 0\n\nTOKEN";
	char got[256], reply[256];
	size_t n = 0, rn = 0;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	/* the answer waits in the socket before the call: the call sends, then reads it */
	assert_int_equal(ps_frame_send(sv[1], answer, sizeof(answer) - 1, -1, ps_mono_ms() + 1000),
			 0);
	assert_int_equal(ps_msg_exchange(sv[0], msg, sizeof(msg) - 1, -1, ps_mono_ms() + 1000,
					 reply, sizeof(reply) - 1, &rn),
			 0);
	assert_int_equal(ps_frame_recv(sv[1], got, sizeof(got) - 1, &n, NULL, ps_mono_ms() + 1000),
			 0);
	assert_int_equal(n, sizeof(msg) - 1);
	assert_memory_equal(got, msg, n);
	assert_int_equal(rn, sizeof(answer) - 1);
	assert_int_equal(ps_msg_status(reply, rn, "the system service", got, sizeof(got)), 0);
	close(sv[1]);
	assert_int_equal(ps_msg_exchange(sv[0], msg, sizeof(msg) - 1, -1, ps_mono_ms() + 1000,
					 reply, sizeof(reply) - 1, &rn),
			 -1);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_status_malformed),
		cmocka_unit_test(test_call),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

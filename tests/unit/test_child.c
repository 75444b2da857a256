/*
 * test_child.c: the start lock (common/child.h: ps_child_start_lock, ps_child_inherited_lock)
 * and ps_child_fds's placement of the descriptors a child keeps, in forked children.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/child.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ps-test-child.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int dir_fd(void)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

/* A child's exit status: whether fd is locked by somebody else (a try from a new open file). */
static int locked_elsewhere(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), busy;

	assert_true(fd >= 0);
	busy = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return busy;
}

static void test_take_once(void **state)
{
	char path[128];
	struct stat st;
	int d = dir_fd(), a, b;

	(void)state;
	snprintf(path, sizeof(path), "%s/x.lock", dir);
	a = ps_child_start_lock(d, path, getuid(), getgid());
	assert_true(a >= 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_uid, getuid());
	assert_true(fcntl(a, F_GETFD) & FD_CLOEXEC);
	/* a second login: busy, and says so with EWOULDBLOCK */
	errno = 0;
	b = ps_child_start_lock(d, path, getuid(), getgid());
	assert_int_equal(b, -1);
	assert_int_equal(errno, EWOULDBLOCK);
	assert_true(locked_elsewhere(path));
	close(a);
	/* free again: the file is there, and is taken as it is */
	b = ps_child_start_lock(d, path, getuid(), getgid());
	assert_true(b >= 0);
	close(b);
	close(d);
}

static void test_refuses_planted(void **state)
{
	char path[128], target[128];
	int d = dir_fd(), fd;

	(void)state;
	/* a symbolic link: not followed, its target not made */
	snprintf(path, sizeof(path), "%s/link.lock", dir);
	snprintf(target, sizeof(target), "%s/target", dir);
	assert_int_equal(symlink(target, path), 0);
	errno = 0;
	assert_int_equal(ps_child_start_lock(d, path, getuid(), getgid()), -1);
	assert_int_not_equal(errno, EWOULDBLOCK);
	assert_int_equal(access(target, F_OK), -1);
	/* a FIFO: not opened for good (O_NONBLOCK) and refused */
	snprintf(path, sizeof(path), "%s/fifo.lock", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(ps_child_start_lock(d, path, getuid(), getgid()), -1);
	assert_int_equal(errno, EPERM);
	/* a file of another owner (here: the lock is meant for uid+1) */
	snprintf(path, sizeof(path), "%s/other.lock", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ps_child_start_lock(d, path, getuid() + 1, getgid()), -1);
	assert_int_equal(errno, EPERM);
	/* a second link to it */
	snprintf(target, sizeof(target), "%s/other2.lock", dir);
	assert_int_equal(link(path, target), 0);
	assert_int_equal(ps_child_start_lock(d, path, getuid(), getgid()), -1);
	assert_int_equal(errno, EPERM);
	close(d);
}

/* The lock goes to a child as descriptor 3 (ps_child_fds) and the child finds it held by itself;
 * the lock lasts while the child has it, after the parent closed its own. */
static void test_inherited(void **state)
{
	char path[128], other[128];
	int d = dir_fd(), lock, p[2], q[2], status;
	pid_t pid;
	char c;

	(void)state;
	snprintf(path, sizeof(path), "%s/pass.lock", dir);
	snprintf(other, sizeof(other), "%s/other.lock", dir);
	lock = ps_child_start_lock(d, path, getuid(), getgid());
	assert_true(lock >= 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int ok;

		close(q[1]);
		ps_child_fds(q[0], p[1], &lock, 1);
		ok = ps_child_inherited_lock(path, false) == 3 &&
		     ps_child_inherited_lock(other, false) == -1 && fcntl(4, F_GETFD) < 0;
		(void)!write(STDOUT_FILENO, ok ? "y" : "n", 1);
		(void)!read(STDIN_FILENO, &c, 1); /* hold it until the parent has looked */
		_exit(ok ? 0 : 1);
	}
	close(p[1]);
	close(q[0]);
	close(lock);
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	assert_true(locked_elsewhere(path)); /* the child holds it now, alone */
	close(q[1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_false(locked_elsewhere(path)); /* and it went with the child */
	close(p[0]);
	close(d);
}

/* The system service's lock: an open file description lock, which a query sees without taking
 * it, and which a second taker finds held (EAGAIN) until the holder closes it. */
static void test_ofd(void **state)
{
	char path[128];
	int a, b;

	(void)state;
	snprintf(path, sizeof(path), "%s/service.lock", dir);
	assert_false(ps_child_lock_held(path)); /* missing */
	a = ps_child_ofd_start_lock(path);
	assert_true(a >= 0);
	assert_true(ps_child_lock_held(path));
	assert_true(ps_child_lock_held(path)); /* the query took nothing */
	errno = 0;
	b = ps_child_ofd_start_lock(path);
	assert_int_equal(b, -1);
	assert_int_equal(errno, EAGAIN);
	close(a);
	assert_false(ps_child_lock_held(path));
	b = ps_child_ofd_start_lock(path);
	assert_true(b >= 0);
	close(b);
}

/* Two kept descriptors land on 3 and 4 whatever their numbers were, also when they sat there
 * crossed; nothing else stays open. */
static void test_fds_crossed(void **state)
{
	int p[2], status;
	pid_t pid;
	char c;

	(void)state;
	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int w = fcntl(p[1], F_DUPFD, 50), a = open("/dev/null", O_RDONLY),
		    b = open("/dev/zero", O_RDONLY), keep[2], ok;
		struct stat s3, s4, sa, sb;

		/* b at 3 and a at 4: each target is the other's source */
		dup2(b, 30);
		dup2(a, 31);
		dup2(30, 3);
		dup2(31, 4);
		close(30);
		close(31);
		fstat(4, &sa);
		fstat(3, &sb);
		keep[0] = 4;
		keep[1] = 3;
		ps_child_fds(STDIN_FILENO, w, keep, 2);
		ok = fstat(3, &s3) == 0 && fstat(4, &s4) == 0 && s3.st_rdev == sa.st_rdev &&
		     s4.st_rdev == sb.st_rdev && fcntl(5, F_GETFD) < 0 && fcntl(w, F_GETFD) < 0 &&
		     !(fcntl(3, F_GETFD) & FD_CLOEXEC) && !(fcntl(4, F_GETFD) & FD_CLOEXEC);
		(void)!write(STDOUT_FILENO, ok ? "y" : "n", 1);
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(p[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_take_once),   cmocka_unit_test(test_refuses_planted),
		cmocka_unit_test(test_inherited),   cmocka_unit_test(test_ofd),
		cmocka_unit_test(test_fds_crossed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * execbench.c: time commands by fork, execv and wait4, and take each run's peak resident memory
 * from the kernel (wait4's rusage.ru_maxrss). A benchmark tool for tests/bench/run, libc only so
 * that its own footprint stays below the commands it measures (at exec the kernel records the
 * forked child's pre-exec peak too; see self_maxrss_kib below).
 *
 *   execbench [-n ROUNDS] [-w WARMUP] [-s] -- CMD ARGS... [-- CMD ARGS...]...
 *
 * Interleaved (default): each round runs every command once, in turn (A B A B ...), and times
 * each run. -s (sequence): each round runs the commands one after the other and times the round
 * as a whole (e.g. curl then keyctl padd: the floor of a cold login). A command's first words may
 * be "<FILE" and ">FILE" (its stdin and stdout; /dev/null by default). CMD is a path (execv, no
 * PATH search). WARMUP rounds (default 5) run first and are not reported.
 *
 * Prints one line per run: "CMD WALL_NS MAXRSS_KIB STATUS" (CMD is the command's index, 0 in
 * sequence mode, where MAXRSS is the largest of the round and STATUS the first non-zero exit
 * status), then "self_maxrss_kib N": this process's own peak RSS (VmHWM: getrusage would also
 * count what the shell that exec'd us had).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMDS_MAX 8

struct cmd {
	char **argv;
	const char *in;
	const char *out;
};

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void redirect(const char *path, int flags, int target)
{
	int fd = open(path, flags | O_CLOEXEC, 0600);

	if (fd < 0 || dup2(fd, target) < 0)
		_exit(126);
}

/* Run one command; *ns its wall time, *rss_kib its peak RSS; returns its exit status (128+sig). */
static int run(const struct cmd *c, long long *ns, long *rss_kib)
{
	struct rusage ru;
	long long t0 = now_ns();
	int status;
	pid_t pid = fork(), w;

	if (pid < 0) {
		perror("execbench: fork");
		exit(1);
	}
	if (pid == 0) {
		redirect(c->in, O_RDONLY, STDIN_FILENO);
		redirect(c->out, O_WRONLY | O_CREAT | O_TRUNC, STDOUT_FILENO);
		execv(c->argv[0], c->argv);
		_exit(127);
	}
	do
		w = wait4(pid, &status, 0, &ru);
	while (w < 0 && errno == EINTR);
	*ns = now_ns() - t0;
	if (w != pid) {
		perror("execbench: wait4");
		exit(1);
	}
	*rss_kib = ru.ru_maxrss;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Split argv at "--" into commands. */
static int parse_cmds(int argc, char **argv, struct cmd *cmds)
{
	int n = 0, i = 0;

	while (i < argc) {
		if (strcmp(argv[i], "--") != 0 || n == CMDS_MAX)
			return -1;
		argv[i++] = NULL; /* ends the previous command's argv */
		cmds[n].in = "/dev/null";
		cmds[n].out = "/dev/null";
		for (; i < argc && (argv[i][0] == '<' || argv[i][0] == '>'); i++) {
			if (argv[i][0] == '<')
				cmds[n].in = argv[i] + 1;
			else
				cmds[n].out = argv[i] + 1;
		}
		if (i == argc || strcmp(argv[i], "--") == 0)
			return -1;
		cmds[n++].argv = argv + i;
		while (i < argc && strcmp(argv[i], "--") != 0)
			i++;
	}
	return n;
}

/* This process's peak RSS in KiB (VmHWM of /proc/self/status), -1 if unknown. */
static long self_hwm_kib(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

int main(int argc, char **argv)
{
	struct cmd cmds[CMDS_MAX];
	long rounds = 1000, warmup = 5, r;
	int opt, ncmds, i, sequence = 0;

	while ((opt = getopt(argc, argv, "+n:w:s")) != -1) {
		switch (opt) {
		case 'n':
			rounds = strtol(optarg, NULL, 10);
			break;
		case 'w':
			warmup = strtol(optarg, NULL, 10);
			break;
		case 's':
			sequence = 1;
			break;
		default:
			goto usage;
		}
	}
	/* getopt stopped at "--" and consumed it: step back so parse_cmds sees it */
	if (optind < 1 || strcmp(argv[optind - 1], "--") != 0)
		goto usage;
	ncmds = parse_cmds(argc - optind + 1, argv + optind - 1, cmds);
	if (ncmds <= 0 || rounds < 1 || warmup < 0)
		goto usage;
	for (r = -warmup; r < rounds; r++) {
		long long total = 0, ns;
		long rss, rss_max = 0;
		int st, first_bad = 0;

		for (i = 0; i < ncmds; i++) {
			st = run(&cmds[i], &ns, &rss);
			if (r < 0)
				continue;
			if (!sequence) {
				printf("%d %lld %ld %d\n", i, ns, rss, st);
				continue;
			}
			total += ns;
			if (rss > rss_max)
				rss_max = rss;
			if (st && !first_bad)
				first_bad = st;
		}
		if (sequence && r >= 0)
			printf("0 %lld %ld %d\n", total, rss_max, first_bad);
	}
	printf("self_maxrss_kib %ld\n", self_hwm_kib());
	return fflush(stdout) == 0 ? 0 : 1;
usage:
	fprintf(stderr, "usage: execbench [-n ROUNDS] [-w WARMUP] [-s] -- [<IN] [>OUT] CMD ARGS... "
			"[-- CMD ARGS...]...\n");
	return 2;
}

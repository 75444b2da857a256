/*
 * service_start.h: `pam_spotify_helper service --start`, how the module starts the system service
 * (helper/service.h) where systemd does not. The module (pam/service.h) execs it as root in full
 * (real, effective and saved uid 0, so that a su or sudo caller can no longer signal it), with its
 * request on stdin, a status pipe on stdout, /dev/null on stderr, no other descriptor and an empty
 * environment.
 *
 * It takes the context every process of the host starts with, whatever the login's caller set: a
 * session of its own, init's resource limits (/proc/1/limits), nice 0, every CPU, oom_score_adj 0,
 * default signals and an empty signal mask, no supplementary groups, the working directory /. The
 * file mode creation mask (077), the core limit (0) and SIGPIPE (ignored) stay as the helper's
 * hardening set them at its start. Then it forks so that init adopts the service: the process the
 * module started ends at once (the module reaps it), and the other one runs the service, which
 * writes the status line ("ready", "busy", "fail CODE TEXT") on stdout and closes it.
 *
 * A limit the caller lowered below what the service needs, or a nice value, that root cannot set
 * back (no CAP_SYS_RESOURCE or CAP_SYS_NICE: a container) keeps the service from starting: the
 * status line is then "fail 6 the system service was not started from this login: REASON; the
 * next login that can starts it".
 */
#ifndef PS_SERVICE_START_H
#define PS_SERVICE_START_H

/* service --start: main() has parsed the command line. Runs the service; an exit code. */
int ps_service_start(void);

#endif

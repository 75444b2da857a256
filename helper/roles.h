/*
 * roles.h: the roles of pam_spotify_helper, one file each, and main.c, which hardens the process
 * and picks the role from argv:
 *   --pam                   role_login.c: run by pam_spotify.so at a login, as the user
 *   keeper                  role_login.c: the user's keeper (keeper.h), started by --pam
 *   login|logout|refresh    role_user.c: run by spotify-token, as the user
 *   service [--start]       service.c, service_start.c: the system service
 */
#ifndef PS_ROLES_H
#define PS_ROLES_H

#include <stdbool.h>

#define PS_HELPER_PROG	   "pam_spotify_helper"
#define PS_LOGIN_TIMEOUT_S 300 /* the design brief: 5 minutes for the user to authorize */

/* The one answer line of --pam on stdout, written at once, never longer than the module reads. */
void ps_role_answer(const char *line);

/* --pam: one request on stdin, one answer line on stdout; the exit code is a PS_EXIT_* value. */
int ps_role_pam(void);

/* keeper: the request on stdin (from the --pam that starts it); argv1 is our "keeper" argument. */
int ps_role_keeper(char *argv1);

/* login, logout, refresh (argv[1]) [--config=PATH] [--timeout=N]: messages on stderr. */
bool ps_role_is_user_cmd(const char *arg);
int ps_role_user(int argc, char **argv);

#endif

/*
 * curl_load.h: libcurl, loaded when the helper first makes a request, not at every start.
 * libcurl and the libraries it pulls in (TLS, HTTP/2, IDN, LDAP, Kerberos: about thirty) cost
 * more to map and relocate than everything else the helper does when it only copies the host's
 * app token or keeps a token that needs no renewal yet, as the user's helper and keeper mostly
 * do. Include this instead of <curl/curl.h>: the curl_* calls below go through pointers that
 * ps_curl_load() fills from libcurl.so.4 (dlopen, RTLD_NOW) and that stay NULL until then.
 */
#ifndef PS_CURL_LOAD_H
#define PS_CURL_LOAD_H

#include <stddef.h>

#define CURL_DISABLE_TYPECHECK /* the checks are macros named like the calls below */
#include <curl/curl.h>

/* The soname the helper was built against (libcurl's ABI has been .4 since 2006). */
#define PS_CURL_SONAME "libcurl.so.4"

struct ps_curl_api {
	__typeof__(curl_global_init) *global_init;
	__typeof__(curl_global_cleanup) *global_cleanup;
	__typeof__(curl_easy_init) *easy_init;
	__typeof__(curl_easy_setopt) *easy_setopt;
	__typeof__(curl_easy_perform) *easy_perform;
	__typeof__(curl_easy_getinfo) *easy_getinfo;
	__typeof__(curl_easy_cleanup) *easy_cleanup;
	__typeof__(curl_easy_strerror) *easy_strerror;
	__typeof__(curl_easy_escape) *easy_escape;
	__typeof__(curl_free) *free;
	__typeof__(curl_slist_append) *slist_append;
	__typeof__(curl_slist_free_all) *slist_free_all;
	__typeof__(curl_url) *url;
	__typeof__(curl_url_cleanup) *url_cleanup;
	__typeof__(curl_url_get) *url_get;
	__typeof__(curl_url_set) *url_set;
};
extern struct ps_curl_api ps_curl;

/*
 * Load libcurl and run curl_global_init, once per process. 0, or -1 with a one-line reason
 * that names the Debian package to install.
 */
int ps_curl_load(char *err, size_t errlen);

/* curl_global_cleanup when it was loaded (the library itself stays mapped). */
void ps_curl_unload(void);

/* curl.h defines these two as function-like macros that call themselves (for old compilers) */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_easy_init	    ps_curl.easy_init
#define curl_easy_setopt    ps_curl.easy_setopt
#define curl_easy_perform   ps_curl.easy_perform
#define curl_easy_getinfo   ps_curl.easy_getinfo
#define curl_easy_cleanup   ps_curl.easy_cleanup
#define curl_easy_strerror  ps_curl.easy_strerror
#define curl_easy_escape    ps_curl.easy_escape
#define curl_free	    ps_curl.free
#define curl_slist_append   ps_curl.slist_append
#define curl_slist_free_all ps_curl.slist_free_all
#define curl_url	    ps_curl.url
#define curl_url_cleanup    ps_curl.url_cleanup
#define curl_url_get	    ps_curl.url_get
#define curl_url_set	    ps_curl.url_set

#endif

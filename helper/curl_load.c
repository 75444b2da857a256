/*
 * curl_load.c: libcurl on first use (see curl_load.h).
 */
#include <config.h> /* autoconf; "config.h" here would be common/config.h */

#include <dlfcn.h>
#include <stdbool.h>
#include <string.h>

#include "helper/curl_load.h"
#include "common/util.h"

struct ps_curl_api ps_curl;

static void *lib;
static bool ready;

/* Each name and where its pointer goes; all or nothing. */
#define API(field, name)                                                                           \
	{                                                                                          \
		(void **)&ps_curl.field, #name                                                     \
	}
static const struct {
	void **slot;
	const char *name;
} api[] = {
	API(global_init, curl_global_init),
	API(global_cleanup, curl_global_cleanup),
	API(easy_init, curl_easy_init),
	API(easy_setopt, curl_easy_setopt),
	API(easy_perform, curl_easy_perform),
	API(easy_getinfo, curl_easy_getinfo),
	API(easy_cleanup, curl_easy_cleanup),
	API(easy_strerror, curl_easy_strerror),
	API(easy_escape, curl_easy_escape),
	API(free, curl_free),
	API(slist_append, curl_slist_append),
	API(slist_free_all, curl_slist_free_all),
	API(url, curl_url),
	API(url_cleanup, curl_url_cleanup),
	API(url_get, curl_url_get),
	API(url_set, curl_url_set),
};

int ps_curl_load(char *err, size_t errlen)
{
	const char *why;
	size_t i;

	if (ready)
		return 0;
	if (!lib)
		lib = dlopen(PS_CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		why = dlerror();
		ps_errf(err, errlen, "cannot load %s (%s): install the Debian package libcurl4",
			PS_CURL_SONAME, why ? why : "unknown error");
		return -1;
	}
	for (i = 0; i < sizeof(api) / sizeof(api[0]); i++) {
		*api[i].slot = dlsym(lib, api[i].name);
		if (!*api[i].slot) {
			memset(&ps_curl, 0, sizeof(ps_curl));
			ps_errf(err, errlen,
				"%s lacks %s: install libcurl 7.62 or later (Debian package "
				"libcurl4)",
				PS_CURL_SONAME, api[i].name);
			return -1;
		}
	}
	if (ps_curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		ps_errf(err, errlen, "cannot initialise libcurl");
		return -1;
	}
	ready = true;
	return 0;
}

void ps_curl_unload(void)
{
	if (ready)
		ps_curl.global_cleanup();
	ready = false;
}

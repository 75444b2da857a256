/*
 * token_info.h: the spotify:token_info payload, {"token_type":..,"scope":..,"expires_at":..,
 * "flow":..,"client_id":..}. Written by the helper, read by the reader, which links no JSON
 * library: this small strict parser serves both.
 */
#ifndef PS_TOKEN_INFO_H
#define PS_TOKEN_INFO_H

#include <stddef.h>

#include "common/config.h"

#define PS_TOKEN_INFO_MAX 4096

struct ps_token_info {
	char token_type[32];
	char scope[PS_SCOPES_MAX];
	long long expires_at; /* Unix seconds */
	char flow[32];
	char client_id[PS_CLIENT_ID_MAX];
};

/* Serialize; returns the length written (without NUL) or -1 when it does not fit. */
int ps_token_info_format(const struct ps_token_info *info, char *buf, size_t buflen);

/* Strict parse of exactly that object (any member order, each once, no others). 0 or -1. */
int ps_token_info_parse(struct ps_token_info *info, const char *buf, size_t len);

#endif

/*
 * cfg_check.h: the contract of a parsed configuration, shared by the config and request fuzz
 * targets: what every accepted ps_config must look like, and the module->helper round trip.
 */
#ifndef PS_FUZZ_CFG_CHECK_H
#define PS_FUZZ_CFG_CHECK_H

#include <stdbool.h>

#include "common/config.h"
#include "common/request.h"

/* Abort unless cfg holds only values the setters accept (finished: after ps_config_finish). */
void ps_fuzz_check_config(const struct ps_config *cfg, bool finished);

/*
 * Abort unless a finished cfg formats into a request of at most PS_REQUEST_MAX bytes that
 * parses back to the same settings, op and secret (secret may be NULL).
 */
void ps_fuzz_request_round_trip(const struct ps_config *cfg, enum ps_op op);

#endif

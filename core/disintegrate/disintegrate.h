/* disintegrate-c: the whole public API. */
#ifndef DISINTEGRATE_H
#define DISINTEGRATE_H

#include <disintegrate/common.h>
#include <disintegrate/schema.h>
#include <disintegrate/event.h>
#include <disintegrate/query.h>
#include <disintegrate/store.h>
#include <disintegrate/listener.h>
#include <disintegrate/async.h>
#include <disintegrate/decision.h>
#include <disintegrate/harness.h>
#include <disintegrate/projection.h>
#include <disintegrate/metrics.h>

#endif

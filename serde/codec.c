/*
 * Avro binary encoding and decoding of event payloads (no framing: the
 * store frames payloads with their writer schema's id).
 */
#include "serde-internal.h"

#include <string.h>

/* avro-c keeps its last error in one buffer: copy it at once. */
static int avro_fail(char *err, size_t errlen, int rc, const char *what)
{
	if (rc == ENOMEM) {
		dis__errf(err, errlen, "%s: out of memory", what);
		return DIS_ENOMEM;
	}
	dis__errf(err, errlen, "%s: %s", what, avro_strerror());
	return DIS_ESERDE;
}

int dis__event_encode(const dis_event *ev, dis__buf *out, char *err,
		      size_t errlen)
{
	avro_value_t *v;
	avro_writer_t w;
	size_t size;
	int rc;

	if (!ev || !out) {
		dis__errf(err, errlen, "dis__event_encode: NULL argument");
		return DIS_EINVAL;
	}
	v = dis__event_value(ev);
	if (!v) {
		dis__errf(err, errlen, "out of memory decoding the event");
		return DIS_ENOMEM;
	}
	rc = avro_value_sizeof(v, &size);
	if (rc)
		return avro_fail(err, errlen, rc, "cannot encode the event");
	if (size > DIS__PAYLOAD_MAX) {
		dis__errf(err, errlen,
			  "the encoded event takes %zu bytes, more "
			  "than the payload limit of %zu",
			  size, DIS__PAYLOAD_MAX);
		return DIS_ESERDE;
	}
	if (dis__buf_reserve(out, size)) {
		dis__errf(err, errlen, "out of memory encoding the event");
		return DIS_ENOMEM;
	}
	w = avro_writer_memory((const char *)out->data + out->len,
			       (int64_t)size);
	if (!w) {
		dis__errf(err, errlen, "out of memory encoding the event");
		return DIS_ENOMEM;
	}
	rc = avro_value_write(w, v);
	if (!rc && avro_writer_tell(w) != (int64_t)size) {
		avro_writer_free(w);
		dis__errf(err, errlen,
			  "cannot encode the event: avro-c wrote "
			  "a size other than it computed");
		return DIS_ESERDE;
	}
	if (rc) {
		rc = avro_fail(err, errlen, rc, "cannot encode the event");
		avro_writer_free(w);
		return rc;
	}
	avro_writer_free(w);
	/* What we write must read back: the same checks as decoding (they
	 * catch, e.g., a string holding invalid UTF-8). */
	rc = dis__avro_scan(avro_value_get_schema(v), out->data + out->len,
			    size, err, errlen);
	if (rc)
		return rc;
	out->len += size;
	return 0;
}

int dis__avro_read_record(const dis_schema *schema, int t, const void *data,
			  size_t len, avro_value_t *out, char *err,
			  size_t errlen)
{
	static const char none[1];
	avro_reader_t r;
	int rc;

	if (avro_generic_value_new(dis__schema_type_iface(schema, t), out))
		return avro_fail(err, errlen, ENOMEM, "cannot decode");
	r = avro_reader_memory(len ? data : none, (int64_t)len);
	if (!r) {
		avro_value_decref(out);
		return avro_fail(err, errlen, ENOMEM, "cannot decode");
	}
	rc = avro_value_read(r, out);
	avro_reader_free(r);
	if (rc) {
		rc = avro_fail(err, errlen, rc, "cannot decode the payload");
		avro_value_decref(out);
		return rc;
	}
	return 0;
}

/* The checks of a decode: both types known, the size, the scan. */
static int decode_check(const dis_schema *reader, const dis_schema *writer,
			const char *type, const void *data, size_t len,
			dis_event **out, char *err, size_t errlen, int *wt,
			int *rt)
{
	const dis__scan_op *plan;
	size_t nplan;

	if (!reader || !writer || !type || !out || (!data && len)) {
		dis__errf(err, errlen, "dis__event_decode: NULL argument");
		return DIS_EINVAL;
	}
	*wt = dis__schema_type_index(writer, type);
	if (*wt < 0) {
		dis__errf(err, errlen,
			  "event type \"%.64s\" is not in the "
			  "writer schema",
			  type);
		return DIS_ESERDE;
	}
	*rt = reader == writer ? *wt : dis__schema_type_index(reader, type);
	if (*rt < 0) {
		dis__errf(err, errlen,
			  "event type \"%.64s\" is not in the "
			  "reader schema",
			  type);
		return DIS_ESERDE;
	}
	if (len > DIS__PAYLOAD_MAX) {
		dis__errf(err, errlen,
			  "the payload takes %zu bytes, more than "
			  "the limit of %zu",
			  len, DIS__PAYLOAD_MAX);
		return DIS_ESERDE;
	}
	plan = dis__schema_type_plan(writer, *wt, &nplan);
	return dis__avro_scan_plan(plan, nplan, data, len, err, errlen);
}

int dis__event_decode_view(const dis_schema *reader, const dis_schema *writer,
			   const char *type, const void *data, size_t len,
			   dis_event **slot, dis_event **out, char *err,
			   size_t errlen)
{
	int wt, rt, rc;

	if (reader != writer)
		return dis__event_decode(reader, writer, type, data, len, out,
					 err, errlen);
	rc = decode_check(reader, writer, type, data, len, out, err, errlen,
			  &wt, &rt);
	if (rc)
		return rc;
	if (slot) {
		rc = dis__event_view(slot, reader, rt, data, len);
		if (!rc)
			*out = *slot;
	} else {
		rc = dis__event_wrap_raw(reader, rt, data, len, out);
	}
	if (rc)
		dis__errf(err, errlen, "out of memory decoding");
	return rc;
}

int dis__event_decode(const dis_schema *reader, const dis_schema *writer,
		      const char *type, const void *data, size_t len,
		      dis_event **out, char *err, size_t errlen)
{
	avro_value_t wv, rv;
	int wt, rt, rc;

	rc = decode_check(reader, writer, type, data, len, out, err, errlen,
			  &wt, &rt);
	if (rc)
		return rc;
	rc = dis__avro_read_record(writer, wt, data, len, &wv, err, errlen);
	if (rc)
		return rc;
	if (reader == writer) {
		rc = dis__event_wrap(writer, wt, &wv, out);
		if (rc)
			dis__errf(err, errlen, "out of memory decoding");
		return rc;
	}

	if (avro_generic_value_new(dis__schema_type_iface(reader, rt), &rv)) {
		avro_value_decref(&wv);
		return avro_fail(err, errlen, ENOMEM, "cannot decode");
	}
	rc = dis__avro_resolve(reader, &rv, &wv, NULL, err, errlen);
	avro_value_decref(&wv);
	if (rc) {
		avro_value_decref(&rv);
		return rc;
	}
	rc = dis__event_wrap(reader, rt, &rv, out);
	if (rc)
		dis__errf(err, errlen, "out of memory decoding");
	return rc;
}

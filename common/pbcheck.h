/*
 * pbcheck: what protobuf-c does not check in a request's wire bytes.
 *
 * proto3 strings must be valid UTF-8, and protobuf-c neither checks that nor keeps a string's
 * length: a string with a NUL byte inside arrives cut at the NUL ("Visible\0hidden" would be
 * stored as "Visible", and a tenant id "acme\0x" would act as "acme"). pbcheck_strings() walks
 * the wire bytes of a message that protobuf-c already decoded, guided by its descriptor,
 * through nested and repeated messages, and refuses the first string field that holds a NUL
 * byte or invalid UTF-8, naming its path ("complaints[3].history[1].status_change.note").
 */
#ifndef TALLY_PBCHECK_H
#define TALLY_PBCHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/*
 * 0 when every string field of the message (desc) in data[0..len) is valid UTF-8 without NUL
 * bytes; otherwise TALLY_EINVAL with "path: contains a NUL byte" or "path: not valid UTF-8"
 * in err. Wire bytes it cannot follow are left to protobuf-c (which decoded them already).
 */
int pbcheck_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                    char *err, size_t errlen);

#endif

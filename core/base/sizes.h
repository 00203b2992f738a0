/*
 * sizes.h - sizes that several layers share: a participant's fingerprint, alias and room
 * name. Buffers are declared with these (+ 1 for the NUL), never with a literal, so a
 * view, a policy table and the room entry cannot disagree.
 */
#ifndef WZP_SIZES_H
#define WZP_SIZES_H

#define WZP_FINGERPRINT_LEN   39  /* "xxxx:" x 8 minus the last colon */
#define WZP_ALIAS_MAX         128 /* longer aliases are truncated */
#define WZP_ROOM_NAME_MAX     255 /* room-name buffers; a valid name is shorter: */
#define WZP_ROOM_NAME_LEN_MAX 253 /* the longest valid room name (a DNS name's limit) */

#endif

/*
 * Files compiled into a binary by cmake/EmbedFiles.cmake, as arrays of embedded_file named by
 * the user, who declares the array extern where it uses it.
 */
#ifndef TALLY_EMBEDDED_H
#define TALLY_EMBEDDED_H

#include <stddef.h>

typedef struct embedded_file {
    const char *name;
    const char *data; /* NUL-terminated (a binary file may hold NULs before: see size) */
    size_t size;      /* the file's length, the final NUL not counted */
} embedded_file;

#endif

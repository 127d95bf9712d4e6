/* Files compiled into the binary by cmake/EmbedFiles.cmake. */
#ifndef TALLY_EMBEDDED_H
#define TALLY_EMBEDDED_H

#include <stddef.h>

typedef struct embedded_file {
    const char *name;
    const char *data; /* NUL-terminated */
} embedded_file;

/* The SQL migrations, ordered by name (0001_..., 0002_...). */
extern const embedded_file migrations[];
extern const size_t migrations_count;

#endif

/*
 * args: one getopt_long pass for the tools: the options reach the handler in order, --help and
 * every kind of usage error end the pass with the right result and say the same things on the
 * right stream (getopt_long's own messages, the stray argument, the usage).
 */
#include "args.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <string.h>

#define USAGE "usage: prog [--name N] [--flag]\n"

static const struct option longopts[] = {
    { "name", required_argument, NULL, 'n' },
    { "flag", no_argument, NULL, 'f' },
    { "number", required_argument, NULL, 'u' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* What the handler saw: the options in order ("n=a f u=2"), and a value it refuses. */
typedef struct seen {
    char log[256];
    const char *refuse;
} seen;

static int take(void *arg, int opt, char *value)
{
    seen *s = arg;
    size_t n = strlen(s->log);
    snprintf(s->log + n, sizeof(s->log) - n, "%s%c%s%s", n ? " " : "", opt, value ? "=" : "",
             value ? value : "");
    if (s->refuse && value && strcmp(value, s->refuse) == 0) {
        fprintf(stderr, "prog: bad %s\n", value);
        return -1;
    }
    return 0;
}

static void redirect_both(void)
{
    cr_redirect_stdout();
    cr_redirect_stderr();
}

static int parse(seen *s, const char *shortopts, int argc, char **argv)
{
    const args_spec spec = { "prog: sub", USAGE, shortopts, longopts, 'h', take, s };
    int rc = args_parse(&spec, argc, argv);
    fflush(stdout);
    fflush(stderr);
    return rc;
}

Test(args, takes_every_option_in_order, .init = cr_redirect_stderr)
{
    char *argv[] = { "prog", "--name", "a", "--flag", "--number=2", "--name", "b", NULL };
    seen s = { .log = "" };
    cr_assert_eq(parse(&s, "", 7, argv), ARGS_OK);
    cr_assert_str_eq(s.log, "n=a f u=2 n=b");
    cr_assert_stderr_eq_str("");
}

Test(args, help_prints_the_usage_on_stdout, .init = cr_redirect_stdout)
{
    char *argv[] = { "prog", "--name", "a", "--help", "--name", "b", NULL };
    seen s = { .log = "" };
    cr_assert_eq(parse(&s, "", 6, argv), ARGS_HELP);
    cr_assert_str_eq(s.log, "n=a", "the options after --help are not taken");
    cr_assert_stdout_eq_str(USAGE);
}

Test(args, short_help_only_where_shortopts_has_it, .init = redirect_both)
{
    char *argv[] = { "prog", "-h", NULL };
    seen s = { .log = "" };
    cr_assert_eq(parse(&s, "h", 2, argv), ARGS_HELP);
    cr_assert_eq(parse(&s, "", 2, argv), ARGS_BAD);
    cr_assert_stdout_eq_str(USAGE);
    cr_assert_stderr_eq_str("prog: invalid option -- 'h'\n" USAGE);
}

Test(args, an_unknown_option_is_said_by_getopt, .init = cr_redirect_stderr)
{
    char *argv[] = { "prog", "--bogus", "--name", "a", NULL };
    seen s = { .log = "" };
    cr_assert_eq(parse(&s, "", 4, argv), ARGS_BAD);
    cr_assert_str_eq(s.log, "", "the pass stops at the first problem");
    cr_assert_stderr_eq_str("prog: unrecognized option '--bogus'\n" USAGE);
}

Test(args, a_missing_value_is_said_by_getopt, .init = cr_redirect_stderr)
{
    char *argv[] = { "prog", "--flag", "--name", NULL };
    seen s = { .log = "" };
    cr_assert_eq(parse(&s, "", 3, argv), ARGS_BAD);
    cr_assert_str_eq(s.log, "f");
    cr_assert_stderr_eq_str("prog: option '--name' requires an argument\n" USAGE);
}

Test(args, an_unwanted_value_is_said_by_getopt, .init = cr_redirect_stderr)
{
    char *argv[] = { "prog", "--flag=1", NULL };
    seen s = { .log = "" };
    cr_assert_eq(parse(&s, "", 2, argv), ARGS_BAD);
    cr_assert_stderr_eq_str("prog: option '--flag' doesn't allow an argument\n" USAGE);
}

Test(args, a_stray_argument_is_said_with_prog, .init = cr_redirect_stderr)
{
    char *argv[] = { "prog", "extra", "--name", "a", "more", NULL };
    seen s = { .log = "" };
    cr_assert_eq(parse(&s, "", 5, argv), ARGS_BAD);
    cr_assert_str_eq(s.log, "n=a", "getopt_long takes the options around it first");
    cr_assert_stderr_eq_str("prog: sub: unexpected argument \"extra\"\n" USAGE);
}

Test(args, a_refused_value_stops_the_pass, .init = cr_redirect_stderr)
{
    char *argv[] = { "prog", "--name", "x", "--flag", NULL };
    seen s = { .log = "", .refuse = "x" };
    cr_assert_eq(parse(&s, "", 4, argv), ARGS_BAD);
    cr_assert_str_eq(s.log, "n=x");
    cr_assert_stderr_eq_str("prog: bad x\n" USAGE);
}

Test(args, parses_again_from_the_start, .init = cr_redirect_stderr)
{
    char *argv1[] = { "prog", "--name", "a", NULL };
    char *argv2[] = { "prog", "--flag", NULL };
    seen s = { .log = "" };
    cr_assert_eq(parse(&s, "", 3, argv1), ARGS_OK);
    cr_assert_eq(parse(&s, "", 2, argv2), ARGS_OK);
    cr_assert_str_eq(s.log, "n=a f");
}

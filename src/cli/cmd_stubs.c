/* cmd_stubs.c — commands not implemented yet (removed as they land). */
#include "cli/cli.h"

#define STUB(fn, name) \
    int fn(struct cli *cli) { return cli_usage_error(cli, name, "'%s' is not implemented yet", name); }


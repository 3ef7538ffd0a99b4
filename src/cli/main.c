/* main.c — smmuctl command-line front-end (placeholder until the commands land). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        printf("smmuctl %s\n", SMMUCTL_VERSION);
        return 0;
    }
    fprintf(stderr, "smmuctl: no command yet\n");
    return 2;
}

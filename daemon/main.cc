// apikeyd's entry point. Everything else lives in the other daemon/ files, which the unit
// tests link.
#include "cli.h"

int main(int argc, char **argv) { return apikeyd::run_cli(argc, argv); }

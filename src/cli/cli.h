/*
 * cli.h - the subcommands of the single `ombud` binary.  Each returns the
 * process exit status (0 ok, 1 error, 2 usage).
 */
#ifndef OMBUD_CLI_H
#define OMBUD_CLI_H

#define CLI_DEFAULT_CONF "ombud.conf"

int cli_serve(int argc, char **argv);
int cli_queue(int argc, char **argv);
int cli_config(int argc, char **argv);
int cli_passwd(int argc, char **argv);
/* tenant administration (the store): cli_company.c ... cli_secretkey.c */
int cli_company(int argc, char **argv);
int cli_domain(int argc, char **argv);
int cli_user(int argc, char **argv);
int cli_credential(int argc, char **argv);
int cli_secret_key(int argc, char **argv);
int cli_billing(int argc, char **argv);
/* `ombud dkim keygen|list|records|verify` (cli_dkim.c) */
int cli_dkim(int argc, char **argv);
/* `ombud dkim verify [--json] [--dns HOST:PORT] < message` (argv[0] is
 * "verify"): 0 a signature passed, 1 none did, 3 temperror, 2 usage. */
int cli_dkim_verify(int argc, char **argv);
/* `ombud spf check|platform-record` (cli_spf.c) */
int cli_spf(int argc, char **argv);

/* -c FILE / --config=FILE / $OMBUD_CONF / ombud.conf, for every command.
 * Removes the option from argv; returns the path. */
const char *cli_config_path(int *argc, char **argv);

#endif

/*
 * nice-peer: a libnice agent driven over stdin/stdout, so that NatKit's ICE agent can be tested against an ICE
 * implementation nobody here wrote. NatKit's own code, built by IceLibniceTests with gcc and pkg-config's flags
 * for libnice; it uses libnice's public API only and binds 127.0.0.1 only.
 *
 * Usage: nice-peer controlling|controlled regular|aggressive
 *
 * Prints (one per line):   ufrag U / pwd P / cand a=candidate:... / gathered
 *                          ready LOCAL REMOTE (the selected pair) / failed / recv TEXT
 * Reads (one per line):    ufrag U / pwd P / cand a=candidate:... / go (start checks)
 *                          send TEXT (a datagram to the peer) / quit
 * Every datagram received is printed and echoed back as "echo:TEXT".
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include <nice/agent.h>

static GMainLoop *loop;
static NiceAgent *agent;
static guint stream_id;
static gchar *remote_ufrag, *remote_pwd;
static GSList *remote_candidates;

static void say(const char *format, ...) G_GNUC_PRINTF(1, 2);

static void say(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    putchar('\n');
    fflush(stdout);
}

static void on_gathering_done(NiceAgent *a, guint stream, gpointer data)
{
    gchar *ufrag = NULL, *pwd = NULL;
    (void)data;
    nice_agent_get_local_credentials(a, stream, &ufrag, &pwd);
    say("ufrag %s", ufrag);
    say("pwd %s", pwd);
    GSList *cands = nice_agent_get_local_candidates(a, stream, 1);
    for (GSList *i = cands; i; i = i->next) {
        gchar *line = nice_agent_generate_local_candidate_sdp(a, i->data);
        say("cand %s", line);
        g_free(line);
    }
    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    g_free(ufrag);
    g_free(pwd);
    say("gathered");
}

static void print_selected(void)
{
    NiceCandidate *local = NULL, *remote = NULL;
    gchar l[NICE_ADDRESS_STRING_LEN], r[NICE_ADDRESS_STRING_LEN];
    if (!nice_agent_get_selected_pair(agent, stream_id, 1, &local, &remote)) {
        say("ready ? ?");
        return;
    }
    nice_address_to_string(&local->addr, l);
    nice_address_to_string(&remote->addr, r);
    say("ready %s:%u %s:%u", l, nice_address_get_port(&local->addr), r, nice_address_get_port(&remote->addr));
}

static void on_state(NiceAgent *a, guint stream, guint component, guint state, gpointer data)
{
    (void)a; (void)stream; (void)component; (void)data;
    if (state == NICE_COMPONENT_STATE_READY)
        print_selected();
    else if (state == NICE_COMPONENT_STATE_FAILED)
        say("failed");
}

static void on_receive(NiceAgent *a, guint stream, guint component, guint len, gchar *buf, gpointer data)
{
    (void)data;
    if (len >= 5 && strncmp(buf, "echo:", 5) == 0) {
        say("recv %.*s", (int)len, buf);
        return;
    }
    say("recv %.*s", (int)len, buf);
    gchar *reply = g_strdup_printf("echo:%.*s", (int)len, buf);
    nice_agent_send(a, stream, component, strlen(reply), reply);
    g_free(reply);
}

static gboolean on_stdin(GIOChannel *source, GIOCondition condition, gpointer data)
{
    gchar *line = NULL;
    gsize length = 0;
    (void)condition; (void)data;
    GIOStatus status = g_io_channel_read_line(source, &line, &length, NULL, NULL);
    if (status == G_IO_STATUS_EOF || status == G_IO_STATUS_ERROR) {
        g_main_loop_quit(loop);
        return FALSE;
    }
    if (status != G_IO_STATUS_NORMAL || line == NULL)
        return TRUE;
    g_strchomp(line);
    if (g_str_has_prefix(line, "ufrag ")) {
        remote_ufrag = g_strdup(line + 6);
    } else if (g_str_has_prefix(line, "pwd ")) {
        remote_pwd = g_strdup(line + 4);
    } else if (g_str_has_prefix(line, "cand ")) {
        NiceCandidate *c = nice_agent_parse_remote_candidate_sdp(agent, stream_id, line + 5);
        if (c == NULL)
            say("error cannot parse %s", line + 5);
        else
            remote_candidates = g_slist_append(remote_candidates, c);
    } else if (strcmp(line, "go") == 0) {
        if (!nice_agent_set_remote_credentials(agent, stream_id, remote_ufrag, remote_pwd))
            say("error credentials refused");
        int added = nice_agent_set_remote_candidates(agent, stream_id, 1, remote_candidates);
        say("started %d", added);
    } else if (g_str_has_prefix(line, "send ")) {
        nice_agent_send(agent, stream_id, 1, strlen(line + 5), line + 5);
    } else if (strcmp(line, "quit") == 0) {
        g_main_loop_quit(loop);
    }
    g_free(line);
    return TRUE;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: nice-peer controlling|controlled regular|aggressive\n");
        return 2;
    }
    gboolean controlling = strcmp(argv[1], "controlling") == 0;
    NiceAgentOption options = NICE_AGENT_OPTION_CONSENT_FRESHNESS;
    if (strcmp(argv[2], "regular") == 0)
        options |= NICE_AGENT_OPTION_REGULAR_NOMINATION;

    loop = g_main_loop_new(NULL, FALSE);
    agent = nice_agent_new_full(g_main_loop_get_context(loop), NICE_COMPATIBILITY_RFC5245, options);
    g_object_set(agent, "controlling-mode", controlling, "upnp", FALSE, "ice-tcp", FALSE, NULL);
    NiceAddress loopback;
    nice_address_init(&loopback);
    nice_address_set_from_string(&loopback, "127.0.0.1");
    nice_agent_add_local_address(agent, &loopback);
    g_signal_connect(agent, "candidate-gathering-done", G_CALLBACK(on_gathering_done), NULL);
    g_signal_connect(agent, "component-state-changed", G_CALLBACK(on_state), NULL);

    stream_id = nice_agent_add_stream(agent, 1);
    nice_agent_attach_recv(agent, stream_id, 1, g_main_loop_get_context(loop), on_receive, NULL);
    if (!nice_agent_gather_candidates(agent, stream_id)) {
        say("error gathering failed");
        return 1;
    }

    GIOChannel *input = g_io_channel_unix_new(0);
    g_io_add_watch(input, G_IO_IN | G_IO_HUP | G_IO_ERR, on_stdin, NULL);
    g_main_loop_run(loop);

    g_io_channel_unref(input);
    g_slist_free_full(remote_candidates, (GDestroyNotify)nice_candidate_free);
    g_object_unref(agent);
    g_main_loop_unref(loop);
    g_free(remote_ufrag);
    g_free(remote_pwd);
    return 0;
}

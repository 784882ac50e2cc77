using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Text.Json;
using NatKit.Proxy;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit proxy status`: the live connection table of a running proxy, from its status endpoint.</summary>
internal sealed partial class ProxyCommands
{
    private static Command Status()
    {
        var cmd = new Command("status", "Show the proxy's live connection table (from its JSON status endpoint).");
        var proxy = new Option<string>("--proxy")
        {
            Description = "The proxy's address:port.",
            DefaultValueFactory = _ => "127.0.0.1:3128",
        };
        var json = new Option<bool>("--json") { Description = "Print JSON: one record per live flow, named by its id." };
        var auth = new Option<string?>("--auth")
        {
            Description = "USER:PASSWORD of a proxy run with --auth (or set NATKIT_PROXY_AUTH, kept out of the process list).",
        };
        cmd.Options.Add(proxy);
        cmd.Options.Add(json);
        cmd.Options.Add(auth);
        cmd.SetAction(async (parse, ct) =>
        {
            var endPoint = ParseEndPoint(parse.GetValue(proxy)!, "--proxy");
            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false })
            {
                Timeout = TimeSpan.FromSeconds(5),
            };
            if ((parse.GetValue(auth) ?? Environment.GetEnvironmentVariable("NATKIT_PROXY_AUTH")) is { Length: > 0 } credentials)
            {
                http.DefaultRequestHeaders.TryAddWithoutValidation("Proxy-Authorization",
                    "Basic " + Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(credentials)));
            }

            string body;
            try
            {
                using var response = await http.GetAsync(new Uri($"http://{endPoint}{new ProxyOptions().StatusPath}"), ct);
                if (response.StatusCode == HttpStatusCode.ProxyAuthenticationRequired)
                {
                    throw new CliException($"the proxy at {endPoint} needs its credentials: give --auth USER:PASSWORD or set NATKIT_PROXY_AUTH.");
                }

                response.EnsureSuccessStatusCode();
                body = await response.Content.ReadAsStringAsync(ct);
            }
            catch (HttpRequestException e)
            {
                throw new CliException($"cannot read the status of the proxy at {endPoint}: {e.Message}");
            }

            using var doc = JsonDocument.Parse(body);
            if (parse.GetValue(json))
            {
                // one record per live flow, named by its id (the endpoint's own document also carries the count)
                CliJson.WriteRecords(doc.RootElement.GetProperty("flows").EnumerateArray()
                    .Select(f => (f.GetProperty("id").GetInt64().ToString(CultureInfo.InvariantCulture), f.GetRawText())));
                return 0;
            }

            var table = new Table().Border(TableBorder.Rounded)
                .AddColumns("id", "kind", "client", "proxy port", "server", "target", "up", "down", "requests", "age");
            foreach (var f in doc.RootElement.GetProperty("flows").EnumerateArray())
            {
                table.AddRow(
                    f.GetProperty("id").GetInt64().ToString(CultureInfo.InvariantCulture),
                    Markup.Escape(f.GetProperty("kind").GetString() ?? ""),
                    Markup.Escape(f.GetProperty("client").GetString() ?? ""),
                    f.GetProperty("proxyPort").GetInt32().ToString(CultureInfo.InvariantCulture),
                    Markup.Escape(f.GetProperty("server").GetString() ?? "-"),
                    Markup.Escape(f.GetProperty("target").GetString() ?? "-"),
                    Bytes(f.GetProperty("bytesUp").GetInt64()),
                    Bytes(f.GetProperty("bytesDown").GetInt64()),
                    f.GetProperty("requests").GetInt64().ToString(CultureInfo.InvariantCulture),
                    f.GetProperty("ageSeconds").GetDouble().ToString("0.0s", CultureInfo.InvariantCulture));
            }

            AnsiConsole.Write(table);
            AnsiConsole.MarkupLineInterpolated($"{doc.RootElement.GetProperty("count").GetInt32()} live flows");
            return 0;
        });
        return cmd;
    }

    private static string Bytes(long n) => n switch
    {
        >= 1L << 30 => (n / (double)(1L << 30)).ToString("0.0 GiB", CultureInfo.InvariantCulture),
        >= 1L << 20 => (n / (double)(1L << 20)).ToString("0.0 MiB", CultureInfo.InvariantCulture),
        >= 1L << 10 => (n / (double)(1L << 10)).ToString("0.0 KiB", CultureInfo.InvariantCulture),
        _ => n.ToString(CultureInfo.InvariantCulture) + " B",
    };
}

using System.CommandLine;
using System.Globalization;
using NatKit.Bench;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit bench peer`: the peer network module's pipes (direct and through NatKit's TURN server) side by
/// side with `ssh -L` to Debian's sshd, and start-up to the first piped byte, on loopback (NatKit.Bench's
/// PeerBenchmark does the work).</summary>
internal sealed class PeerBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var megabytes = new Option<int>("--megabytes") { Description = "Megabytes (10^6 bytes) per transfer.", DefaultValueFactory = _ => 200 };
        var rounds = new Option<int>("--rounds") { Description = "Interleaved rounds; each figure is the median.", DefaultValueFactory = _ => 3 };
        var samples = new Option<int>("--startup-samples") { Description = "Start-ups timed per contender (median).", DefaultValueFactory = _ => 9 };
        var noSsh = new Option<bool>("--no-ssh") { Description = "Leave out the ssh -L contender." };
        var cipher = new Option<string>("--ssh-cipher") { Description = "The cipher ssh asks for.", DefaultValueFactory = _ => "aes256-gcm@openssh.com" };
        var json = new Option<bool>("--json") { Description = "One JSON array of named records (the one --json shape) instead of tables." };
        var command = new Command("peer",
            "Pipe throughput (direct, and through NatKit's TURN server) vs ssh -L (Debian's OpenSSH) and start-up to the first piped byte, on loopback.")
        {
            megabytes, rounds, samples, noSsh, cipher, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            Range(parse.GetValue(megabytes), "--megabytes", 1, 100_000);
            Range(parse.GetValue(rounds), "--rounds", 1, 100);
            Range(parse.GetValue(samples), "--startup-samples", 1, 1000);
            var cipherName = parse.GetValue(cipher)!;
            if (cipherName.Length == 0 || !cipherName.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '@' or '.') ||
                cipherName.StartsWith('-'))
            {
                throw new CliException($"--ssh-cipher '{cipherName}': not a cipher name; use one `ssh -Q cipher` lists, e.g. aes256-gcm@openssh.com.");
            }

            var asJson = parse.GetValue(json);
            var options = new PeerBenchmarkOptions
            {
                Bytes = parse.GetValue(megabytes) * 1_000_000L,
                Rounds = parse.GetValue(rounds),
                StartupSamples = parse.GetValue(samples),
                Ssh = !parse.GetValue(noSsh),
                SshCipher = parse.GetValue(cipher)!,
            };
            PeerBenchmarkResult result;
            if (asJson)
            {
                result = await PeerBenchmark.RunAsync(options, ct).ConfigureAwait(false);
                CliJson.WriteRecords(BenchJson.PeerRecords(result));
                return 0;
            }

            result = await AnsiConsole.Status().StartAsync("starting", status =>
                PeerBenchmark.RunAsync(options with { Progress = s => status.Status(Markup.Escape(s)) }, ct)).ConfigureAwait(false);
            Write(result);
            return 0;
        });
        return command;
    }

    private static void Range(int value, string flag, int min, int max)
    {
        if (value < min || value > max)
        {
            throw new CliException(string.Create(CultureInfo.InvariantCulture, $"{flag} {value}: must be {min} to {max}."));
        }
    }

    private static void Write(PeerBenchmarkResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        var ssh = r.Throughput.FirstOrDefault(t => t.Name == "ssh -L");
        var table = new Table().AddColumns("contender", "what", "MB/s (median)", "rounds", "vs ssh -L");
        foreach (var t in r.Throughput)
        {
            table.AddRow(Markup.Escape(t.Name), Markup.Escape(t.What), t.Median.ToString("0", inv),
                string.Join(" ", t.MegabytesPerSecond.Select(v => v.ToString("0", inv))),
                ssh is null ? "-" : (t.Median / ssh.Median).ToString("0.00", inv) + "x");
        }

        AnsiConsole.Write(table);
        var start = new Table().AddColumns("start-up", "what", "ms (median)", "min", "max");
        foreach (var s in r.Startup)
        {
            start.AddRow(Markup.Escape(s.Name), Markup.Escape(s.What), s.Median.ToString("0.0", inv),
                s.Milliseconds.Min().ToString("0.0", inv), s.Milliseconds.Max().ToString("0.0", inv));
        }

        AnsiConsole.Write(start);
        Console.WriteLine(string.Create(inv,
            $"{r.Bytes / 1e6:0} MB per transfer, {r.Rounds} rounds; load {r.LoadBefore} before, {r.LoadAfter} after, on {Environment.ProcessorCount} cores; ssh: {r.SshVersion ?? r.SshSkipped}"));
    }
}

using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using NatKit.Linux;
using NatKit.Net;
using NatKit.Traversal;
using NatKit.Traversal.HardNat;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Scenarios.Matrix;

/// <summary>What one peer of a namespace cell is told when it runs as its own process (`natkit lab agent`).</summary>
public sealed record MatrixAgentOptions
{
    /// <summary>The address and port the node binds (the peer's address, <see cref="NetnsMatrixCell.AgentPort"/>).</summary>
    public required IPEndPoint Bind { get; init; }

    /// <summary>The cell's TURN server, or null for a cell without a relay.</summary>
    public IPEndPoint? Turn { get; init; }

    /// <summary>The router to ask for a port mapping (NAT-PMP or PCP), or null for none.</summary>
    public IPEndPoint? PortMapGateway { get; init; }

    /// <summary>The peer to connect to; null: accept one connection.</summary>
    public NodeId? Connect { get; init; }

    public ProbeBudget Budget { get; init; } = new();

    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// One peer of a namespace cell as a process of its own (`natkit lab agent`, started by <see cref="ProcessRunner"/>):
/// a <see cref="TraversalNode"/> on the real network of the namespace it runs in, with the cell's rendezvous, STUN
/// and TURN servers. The accepting side prints <c>node ID</c> once it is registered, answers every ping over the
/// connection and ends on the connecting side's bye, printing <c>probes N</c>; the connecting side connects, pings
/// until a pong crosses, and prints its outcome as one JSON line.
/// </summary>
public static class MatrixAgent
{
    /// <summary>The line that says the node is registered: <c>node ID</c>.</summary>
    public const string NodeLine = "node ";

    /// <summary>The accepting side's last line: <c>probes N</c>.</summary>
    public const string ProbesLine = "probes ";

    private static readonly byte[] Ping = Encoding.ASCII.GetBytes("natkit matrix ping");
    private static readonly byte[] Pong = Encoding.ASCII.GetBytes("natkit matrix pong");
    private static readonly byte[] Bye = Encoding.ASCII.GetBytes("natkit matrix bye");

    /// <summary>Runs the agent until it has done its part (or <paramref name="cancellationToken"/> ends it).</summary>
    public static async Task RunAsync(INetwork network, MatrixAgentOptions options, TextWriter output,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(output);
        var traversal = TraversalCellRunner.NodeOptions(options.Turn, options.Budget, options.ConnectTimeout, null) with
        {
            PortMap = options.PortMapGateway is { } gateway
                ? TraversalCellRunner.MapThrough(network, gateway, options.Bind.Address)
                : null,
        };
        await using var node = await TraversalNode.StartAsync(network, options.Bind, NodeIdentity.Create(), traversal,
            cancellationToken: cancellationToken).ConfigureAwait(false);
        await SayAsync(output, NodeLine + node.Id).ConfigureAwait(false);
        if (options.Connect is not { } peer)
        {
            await using var accepted = await node.AcceptAsync(cancellationToken).ConfigureAwait(false);
            await AnswerUntilByeAsync(accepted, cancellationToken).ConfigureAwait(false);
            await SayAsync(output, ProbesLine + accepted.ProbesSent.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);
            return;
        }

        MatrixOutcome outcome;
        try
        {
            await using var connection = await node.ConnectAsync(peer, cancellationToken).ConfigureAwait(false);
            outcome = await TraversalCellRunner.SendUntilReceivedAsync(connection, Ping, connection.Socket, Pong,
                    TimeProvider.System, cancellationToken).ConfigureAwait(false)
                ? TraversalCellRunner.Outcome(connection, connection.ProbesSent)
                : MatrixOutcome.Failed($"connected ({connection}) but no datagram crossed", connection.ProbesSent);
            for (var i = 0; i < 3; i++)
            {
                await connection.Socket.SendToAsync(Bye, connection.RemoteEndPoint, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is TraversalException or RendezvousException)
        {
            outcome = MatrixOutcome.Failed(e.Message);
        }

        await SayAsync(output, ToJson(outcome)).ConfigureAwait(false);
    }

    /// <summary>
    /// A namespace cell runner whose peers are processes: the rendezvous runs here (in the cell's rendezvous
    /// namespace), B is started with <c>--accept</c> and A, once B is registered, with <c>--connect</c> B's id;
    /// the outcome is A's, with both sides' probes. <paramref name="program"/> and <paramref name="prefix"/> start
    /// `natkit` (for example the dotnet host and natkit.dll).
    /// </summary>
    public static NetnsCellRunner ProcessRunner(string program, IReadOnlyList<string> prefix)
    {
        ArgumentException.ThrowIfNullOrEmpty(program);
        ArgumentNullException.ThrowIfNull(prefix);
        return async (cell, options, cancellationToken) =>
        {
            await using var service = await TraversalCellRunner.StartRendezvousAsync(cell.Network("rendezvous"),
                cancellationToken).ConfigureAwait(false);
            var b = cell.Start("b", program, [.. prefix, .. Arguments(cell, "b", options), "--accept"]);
            var ready = await LineAsync(b, NodeLine, TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
            if (ready is null)
            {
                return MatrixOutcome.Failed($"agent b never registered ({Ended(b)})");
            }

            var a = cell.Start("a", program, [.. prefix, .. Arguments(cell, "a", options), "--connect", ready[NodeLine.Length..]]);
            var result = await LineAsync(a, "{", options.ConnectTimeout + TimeSpan.FromSeconds(30), cancellationToken)
                .ConfigureAwait(false);
            if (result is null || FromJson(result) is not { } outcome)
            {
                return MatrixOutcome.Failed($"agent a gave no result ({Ended(a)})");
            }

            var probes = await LineAsync(b, ProbesLine, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            return probes is not null && long.TryParse(probes.AsSpan(ProbesLine.Length), NumberStyles.None,
                CultureInfo.InvariantCulture, out var n)
                ? outcome with { ProbesSent = outcome.ProbesSent + n }
                : outcome;
        };
    }

    /// <summary>`natkit lab agent`'s arguments for a peer of <paramref name="cell"/>.</summary>
    public static IReadOnlyList<string> Arguments(NetnsMatrixCell cell, string role, MatrixOptions options)
    {
        ArgumentNullException.ThrowIfNull(cell);
        ArgumentNullException.ThrowIfNull(options);
        var list = new List<string>
        {
            "lab", "agent",
            "--bind", new IPEndPoint(cell.Address(role), NetnsMatrixCell.AgentPort).ToString(),
            "--probes", options.Budget.Total.ToString(CultureInfo.InvariantCulture),
            "--probes-per-second", options.Budget.PerSecond.ToString(CultureInfo.InvariantCulture),
            "--timeout", ((int)Math.Ceiling(options.ConnectTimeout.TotalSeconds)).ToString(CultureInfo.InvariantCulture),
        };
        if (cell.Turn is { } turn)
        {
            list.AddRange(["--turn", turn.ToString()]);
        }

        if (TraversalCellRunner.NetnsPortMapGateway(cell, role, options) is { } gateway)
        {
            list.AddRange(["--portmap", gateway.ToString()]);
        }

        return list;
    }

    /// <summary>An outcome as the connecting agent prints it.</summary>
    public static string ToJson(MatrixOutcome outcome)
    {
        ArgumentNullException.ThrowIfNull(outcome);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("path", outcome.Path.ToString());
            if (outcome.Method is { } m) w.WriteString("method", m.ToString());
            if (outcome.ConnectTime is { } t) w.WriteNumber("connect_ms", t.TotalMilliseconds);
            w.WriteNumber("probes", outcome.ProbesSent);
            if (outcome.Rtt is { } r) w.WriteNumber("rtt_ms", r.TotalMilliseconds);
            if (outcome.Detail is { } d) w.WriteString("detail", d);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>The outcome of <see cref="ToJson"/>'s line; null for anything else.</summary>
    public static MatrixOutcome? FromJson(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            var o = doc.RootElement;
            if (o.ValueKind != JsonValueKind.Object || !o.TryGetProperty("path", out var p) ||
                !Enum.TryParse<MatrixPath>(p.GetString(), out var path) || !o.TryGetProperty("probes", out var probes) ||
                !probes.TryGetInt64(out var sent))
            {
                return null;
            }

            TraversalMethod? method = o.TryGetProperty("method", out var m) && Enum.TryParse<TraversalMethod>(m.GetString(), out var mm)
                ? mm
                : null;
            return new MatrixOutcome(path, method, Milliseconds(o, "connect_ms"), sent, Milliseconds(o, "rtt_ms"),
                o.TryGetProperty("detail", out var d) ? d.GetString() : null);
        }
        catch (JsonException)
        {
            return null;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    private static TimeSpan? Milliseconds(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.TryGetDouble(out var ms) && double.IsFinite(ms) && ms >= 0
            ? TimeSpan.FromMilliseconds(ms)
            : null;

    private static async Task SayAsync(TextWriter output, string line)
    {
        await output.WriteLineAsync(line).ConfigureAwait(false);
        await output.FlushAsync().ConfigureAwait(false);
    }

    private static async Task AnswerUntilByeAsync(PeerConnection connection, CancellationToken cancellationToken)
    {
        var buffer = new byte[64];
        while (true)
        {
            var got = await connection.Socket.ReceiveFromAsync(buffer, cancellationToken).ConfigureAwait(false);
            var data = buffer.AsSpan(0, got.Length);
            if (data.SequenceEqual(Bye))
            {
                return;
            }

            if (data.SequenceEqual(Ping))
            {
                await connection.Socket.SendToAsync(Pong, connection.RemoteEndPoint, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The first line of the process's output that starts with <paramref name="prefix"/>, once it is
    /// there; null when the process ends or the time is up without it.</summary>
    private static async Task<string?> LineAsync(NamespaceProcess process, string prefix, TimeSpan within,
        CancellationToken cancellationToken)
    {
        var started = TimeProvider.System.GetTimestamp();
        while (true)
        {
            foreach (var line in process.Output.Split('\n'))
            {
                if (line.StartsWith(prefix, StringComparison.Ordinal))
                {
                    return line.TrimEnd('\r');
                }
            }

            if (process.HasExited || TimeProvider.System.GetElapsedTime(started) > within)
            {
                return null;
            }

            // a child's output arrives through its pipe: look again shortly
            await Task.Delay(TimeSpan.FromMilliseconds(20), cancellationToken).ConfigureAwait(false);
        }
    }

    private static string Ended(NamespaceProcess process)
    {
        var errors = process.Errors.Trim();
        var state = process.HasExited ? $"exit code {process.ExitCode}" : "still running";
        return errors.Length == 0 ? state : $"{state}: {errors.Split('\n')[^1]}";
    }
}

using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NatKit.Lab.Scheduling;
using NatKit.Net;

namespace NatKit.Lab.Tests;

/// <summary>
/// <see cref="INetwork.ForForeignAwaiters"/> in the lab: code that awaits a lab stream with ConfigureAwait(false)
/// through nested async methods (SslStream's shape) starts from a frame with no context (a lab event) and the stream
/// wakes its reader the way uTP does (continuations run asynchronously, on the captured context). Unwrapped, the
/// reader wakes on the thread pool, which the lab refuses (the first test then ends in the lab's deadlock report);
/// wrapped, every continuation runs on the loop thread. SslStream itself handshakes and carries bytes over the wrapper
/// (reads, writes, flushes and disposal pass through it).
/// </summary>
public sealed class ForeignAwaiterTests
{
    [Fact]
    public void NestedConfigureAwaitFalseReads_StartedFromALabEvent_StayOnTheLoopThread()
    {
        var lab = new VirtualNetwork(seed: 1);
        var host = lab.AddHost("h", lab.AddSegment("internet"), "203.0.113.1");
        var loopThread = Environment.CurrentManagedThreadId;
        var (bytes, threads) = lab.Run(async () =>
        {
            var stream = host.ForForeignAwaiters(new SignalStream(lab.TimeProvider));
            var threads = new List<int>();
            var done = new TaskCompletionSource<int>();
            using var start = lab.TimeProvider.CreateTimer(_ => Forward(ForeignReadsAsync(stream, threads), done), null,
                TimeSpan.FromMilliseconds(1), Timeout.InfiniteTimeSpan); // a lab event: no context is current
            return (await done.Task, threads);
        });
        Assert.Equal(3, bytes);
        Assert.Equal(3, threads.Count);
        Assert.All(threads, t => Assert.Equal(loopThread, t));
    }

    [Fact]
    public void SslStream_OverLabTcp_HandshakesAndCarriesBytes_OnTheLoop()
    {
        var lab = new VirtualNetwork(seed: 2);
        var internet = lab.AddSegment("internet", link: new LinkProfile { Latency = TimeSpan.FromMilliseconds(5) });
        var server = lab.AddHost("server", internet, "203.0.113.1");
        var client = lab.AddHost("client", internet, "203.0.113.2");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var cert = new CertificateRequest("CN=lab", key, HashAlgorithmName.SHA256)
            .CreateSelfSigned(LabScheduler.DefaultEpoch.AddDays(-1), LabScheduler.DefaultEpoch.AddDays(1));
        var body = RandomNumberGenerator.GetBytes(200_000);
        var received = lab.Run(async () =>
        {
            var endPoint = new IPEndPoint(IPAddress.Parse("203.0.113.1"), 443);
            await using var listener = await server.ListenTcpAsync(endPoint);
            var serve = ServeAsync(listener, server, cert, body);
            await using var c = await client.ConnectTcpAsync(endPoint);
            await using var tls = new SslStream(client.ForForeignAwaiters(c.Stream), leaveInnerStreamOpen: false,
                (_, presented, _, _) => presented?.GetCertHashString() == cert.GetCertHashString());
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "lab" });
            var all = new MemoryStream();
            await tls.CopyToAsync(all);
            await serve;
            return all.ToArray();
        });
        Assert.Equal(body, received);
    }

    private static async Task ServeAsync(IStreamListener listener, LabHost host, X509Certificate2 cert, byte[] body)
    {
        await using var c = await listener.AcceptAsync();
        await using var tls = new SslStream(host.ForForeignAwaiters(c.Stream), leaveInnerStreamOpen: false);
        await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = cert });
        await tls.WriteAsync(body);
        await tls.ShutdownAsync();
        c.ShutdownSend();
    }

    /// <summary>SslStream's shape: nested Task-based async methods, every await ConfigureAwait(false).</summary>
    private static async Task<int> ForeignReadsAsync(Stream stream, List<int> threads)
    {
        var total = 0;
        for (var i = 0; i < 3; i++)
        {
            total += await ReadOneAsync(stream).ConfigureAwait(false);
            threads.Add(Environment.CurrentManagedThreadId);
        }

        return total;
    }

    private static async Task<int> ReadOneAsync(Stream stream)
    {
        var one = new byte[1];
        return await stream.ReadAsync(one).ConfigureAwait(false);
    }

    private static void Forward(Task<int> task, TaskCompletionSource<int> done) =>
        task.ContinueWith(t => done.SetResult(t.Result), TaskContinuationOptions.ExecuteSynchronously);

    /// <summary>A stream that reads like uTP's: each read waits for a signal (a lab timer here) whose continuation
    /// runs asynchronously, on the context captured at the wait, or on the thread pool when none was.</summary>
    private sealed class SignalStream(TimeProvider time) : Stream
    {
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using var timer = time.CreateTimer(s => ((TaskCompletionSource)s!).SetResult(), signal,
                TimeSpan.FromMilliseconds(10), Timeout.InfiniteTimeSpan);
            await signal.Task;
            buffer.Span[0] = 1;
            return 1;
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

using System.Buffers;
using System.Net;
using System.Net.Sockets;
using NatKit.Net;

namespace NatKit.Utp.Internal;

internal enum ConnectionState
{
    SynSent,
    Connected,
    Closed,
    Failed,
}

/// <summary>
/// One uTP connection: the BEP 29 state machine with LEDBAT (RFC 6817) congestion control. Every method runs under
/// the endpoint's gate and takes the time as an argument; packets leave through <see cref="UtpSocket"/>'s send
/// path. Nothing here allocates per packet: the send window and the reorder buffer are rings of slots whose
/// buffers are rented once and reused.
/// </summary>
internal sealed class UtpConnection
{
    private const int DuplicateAcksBeforeResend = 3;
    private const int MaxSackBytes = 32;
    private const int MaxFastResendsPerAck = 4;

    private readonly UtpSocket _owner;
    private readonly UtpOptions _options;
    private readonly int _mss;
    private readonly int _datagramSize;
    private readonly int _mask;
    private readonly OutPacket[] _out;
    private readonly InPacket[] _in;
    private readonly ByteRing _sendQueue;
    private readonly ByteRing _recvBuffer;
    private readonly DelayHistory _ourDelay = new();
    private readonly long _minRto;
    private readonly long _maxRto;
    private readonly long _target;

    // send side
    private ushort _seqNr;
    private int _curWindowPackets;
    private int _inFlightBytes;
    private int _resendPending;
    private double _cwnd;
    private double _ssthresh;
    private bool _slowStart = true;
    private uint _peerWindow;
    private long _rtt;
    private long _rttVar;
    private long _rto;
    private bool _haveRtt;
    private long _rtoDeadline;
    private int _dupAcks;
    private bool _inRecovery;
    private ushort _recoverySeq;
    private uint _replyMicro;
    private bool _writeShutdown;
    private bool _corked;
    private long _corkDeadline;
    private bool _finSent;
    private bool _finAcked;
    private int _synRetries;
    private long _lastProgress;
    private int _probes; // probe timeouts since the last progress: 1 resent the oldest packet, 2 the whole flight
    private bool _probing;
    private ushort _probeSeq;

    // receive side
    private ushort _ackNr;
    private int _reorderCount;
    private int _reorderBytes;
    private bool _eof;
    private bool _peerFinSeen;
    private ushort _peerFinSeq;
    private int _unackedPackets;
    private int _lastAdvertised;

    private long _lastReceived;
    private long _lastSent;
    private long _lastProbe;
    private bool _userClosed;
    private long _lingerUntil;

    public UtpConnection(UtpSocket owner, UtpOptions options, IPEndPoint remote, ushort recvId, ushort sendId,
        long now)
    {
        _owner = owner;
        _options = options;
        Remote = remote;
        RecvId = recvId;
        SendId = sendId;
        _datagramSize = options.MaxDatagramSizeFor(remote);
        _mss = _datagramSize - UtpHeader.Size;
        _mask = options.MaxPacketsInFlight - 1;
        _out = new OutPacket[options.MaxPacketsInFlight];
        _in = new InPacket[options.MaxPacketsInFlight];
        _sendQueue = new ByteRing(options.SendBufferSize);
        _recvBuffer = new ByteRing(options.ReceiveBufferSize);
        _minRto = Micros(options.MinRetransmitTimeout);
        _maxRto = Micros(options.MaxRetransmitTimeout);
        _target = Micros(options.TargetDelay);
        _rto = Math.Max(_minRto, 1_000_000);
        _cwnd = 2 * _mss;
        _ssthresh = (double)_mss * _mask;
        _peerWindow = (uint)_mss;
        _lastReceived = now;
        _lastSent = now;
        _lastProbe = now;
        _lastProgress = now;
        ReadSignal = new AsyncSignal(owner.Gate);
        WriteSignal = new AsyncSignal(owner.Gate);
        FlushSignal = new AsyncSignal(owner.Gate);
        ConnectSignal = new AsyncSignal(owner.Gate);
    }

    public IPEndPoint Remote { get; }

    public ushort RecvId { get; }

    public ushort SendId { get; }

    public ConnectionState State { get; private set; }

    public Exception? Error { get; private set; }

    public bool AckDeferred { get; private set; }

    public AsyncSignal ReadSignal { get; }

    public AsyncSignal WriteSignal { get; }

    public AsyncSignal FlushSignal { get; }

    public AsyncSignal ConnectSignal { get; }

    public bool EndOfStream => _eof && _recvBuffer.Count == 0;

    public bool WriteShutdown => _writeShutdown;

    /// <summary>All written bytes have been acknowledged (and the FIN too, once shut down).</summary>
    public bool Drained => _sendQueue.Count == 0 && _curWindowPackets == 0;

    public UtpStatistics Statistics => new(
        TimeSpan.FromMicroseconds(_rtt), TimeSpan.FromMicroseconds(_rto), (int)_cwnd, _inFlightBytes,
        (int)_peerWindow, TimeSpan.FromMicroseconds(_ourDelay.QueuingDelay), PacketsSent, Retransmissions,
        FastRetransmissions, Timeouts, PacketsReceived);

    public long PacketsSent { get; private set; }

    public long Retransmissions { get; private set; }

    public long FastRetransmissions { get; private set; }

    public long Timeouts { get; private set; }

    public long PacketsReceived { get; private set; }

    private static long Micros(TimeSpan t) => (long)t.TotalMicroseconds;

    private static bool SeqLess(ushort a, ushort b) => (short)(a - b) < 0;

    // ---------------------------------------------------------------- opening

    /// <summary>Initiator: sends the SYN (seq_nr 1, connection_id = our receive id).</summary>
    public void StartConnect(long now)
    {
        State = ConnectionState.SynSent;
        _seqNr = 1;
        ref var slot = ref _out[_seqNr & _mask];
        EnsureBuffer(ref slot, UtpHeader.Size);
        UtpHeader.Write(slot.Buffer, UtpPacketType.Syn, 0, RecvId, 0, 0, 0, _seqNr, 0);
        slot.Length = UtpHeader.Size;
        slot.Payload = 0;
        _seqNr++;
        _curWindowPackets = 1;
        _rto = Micros(_options.SynTimeout);
        Transmit(ref slot, now);
        _rtoDeadline = now + _rto;
    }

    /// <summary>Acceptor: answers a SYN with a STATE; the connection is established from here on.</summary>
    public void Accept(ushort synSeq, ushort initialSeq, long now)
    {
        State = ConnectionState.Connected;
        _ackNr = synSeq;
        _seqNr = initialSeq;
        SendState(now);
    }

    /// <summary>A retransmitted SYN for a connection we already accepted: our STATE was lost, send it again.</summary>
    public void OnDuplicateSyn(long now)
    {
        if (State == ConnectionState.Connected)
        {
            SendState(now);
        }
    }

    // ---------------------------------------------------------------- incoming

    public void OnReset()
    {
        if (State is ConnectionState.Closed or ConnectionState.Failed)
        {
            _owner.Remove(this);
            return;
        }

        Fail(State == ConnectionState.SynSent
            ? new NetworkException(SocketError.ConnectionRefused, $"uTP connection to {Remote} refused (RESET)")
            : new NetworkException(SocketError.ConnectionReset, $"uTP connection to {Remote} reset by the peer"));
    }

    public void OnPacket(in UtpHeader h, long now)
    {
        if (State == ConnectionState.Failed)
        {
            return;
        }

        var type = h.Type;
        if (State == ConnectionState.SynSent)
        {
            if (type != UtpPacketType.State || h.AckNumber != (ushort)(_seqNr - 1))
            {
                return;
            }

            _ackNr = (ushort)(h.SequenceNumber - 1);
            State = ConnectionState.Connected;
            _rto = Math.Max(_minRto, 1_000_000);
            ConnectSignal.Set();
        }

        // An ack_nr for a packet we never sent means a forged or confused packet: drop it whole (as libutp does).
        var allowance = _curWindowPackets + DuplicateAcksBeforeResend;
        var lastSent = (ushort)(_seqNr - 1);
        if (SeqLess(lastSent, h.AckNumber) || SeqLess(h.AckNumber, (ushort)(lastSent - allowance)))
        {
            return;
        }

        PacketsReceived++;
        _lastReceived = now;
        var ts = h.TimestampMicroseconds;
        _replyMicro = ts == 0 ? 0 : (uint)now - ts;

        if (type is UtpPacketType.Data or UtpPacketType.Fin)
        {
            OnData(h, type, now);
        }

        OnAck(h, type, now);
        TrySend(now);
        CheckClosed(now);
    }

    private void OnData(in UtpHeader h, UtpPacketType type, long now)
    {
        if (_eof)
        {
            // Everything up to the FIN is in: anything else is a retransmission; re-acknowledge it.
            SendState(now);
            return;
        }

        var seq = h.SequenceNumber;
        var offset = (ushort)(seq - _ackNr - 1);
        var window = _mask + 1;
        if (offset >= window)
        {
            if (offset >= 0x10000 - window)
            {
                SendState(now); // an old packet (or a keepalive probe): the peer lost our ACK
            }

            return;
        }

        if (_peerFinSeen && SeqLess(_peerFinSeq, seq))
        {
            return; // past the FIN
        }

        var payload = h.Payload;
        if (type == UtpPacketType.Fin)
        {
            payload = default;
            if (!_peerFinSeen)
            {
                _peerFinSeen = true;
                _peerFinSeq = seq;
            }
        }

        if (offset == 0)
        {
            if (payload.Length > _recvBuffer.Free - _reorderBytes)
            {
                return; // the peer overran our window: drop, it will retransmit
            }

            Deliver(payload);
            _ackNr = seq;
            if (type == UtpPacketType.Fin)
            {
                _eof = true;
            }

            var reordered = false;
            while (!_eof && _reorderCount > 0)
            {
                ref var next = ref _in[(ushort)(_ackNr + 1) & _mask];
                if (!next.Present)
                {
                    break;
                }

                reordered = true;
                Deliver(next.Buffer.AsSpan(0, next.Length));
                _reorderBytes -= next.Length;
                _reorderCount--;
                next.Present = false;
                _ackNr++;
                if (next.Fin)
                {
                    _eof = true;
                }
            }

            ReadSignal.Set();
            _unackedPackets++;
            if (_eof || reordered || _reorderCount > 0 || _unackedPackets >= _options.AckEveryPackets)
            {
                SendState(now);
            }
            else if (!AckDeferred)
            {
                AckDeferred = true;
                _owner.DeferAck(this);
            }

            return;
        }

        ref var slot = ref _in[seq & _mask];
        if (slot.Present)
        {
            SendState(now); // duplicate
            return;
        }

        if (payload.Length + _reorderBytes > _recvBuffer.Free)
        {
            return;
        }

        if (slot.Buffer is null || slot.Buffer.Length < payload.Length)
        {
            if (slot.Buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(slot.Buffer);
            }

            slot.Buffer = ArrayPool<byte>.Shared.Rent(Math.Max(payload.Length, _mss));
        }

        payload.CopyTo(slot.Buffer);
        slot.Length = payload.Length;
        slot.Present = true;
        slot.Fin = type == UtpPacketType.Fin;
        _reorderCount++;
        _reorderBytes += payload.Length;
        SendState(now); // out of order: ACK at once, with the selective ACK, so the sender can repair quickly
    }

    private void Deliver(ReadOnlySpan<byte> payload)
    {
        if (!_userClosed)
        {
            _recvBuffer.Write(payload);
        }
    }

    private void OnAck(in UtpHeader h, UtpPacketType type, long now)
    {
        var oldest = (ushort)(_seqNr - _curWindowPackets);
        var acks = (ushort)(h.AckNumber - (ushort)(oldest - 1));
        if (acks > _curWindowPackets)
        {
            acks = 0;
        }

        // A duplicate ACK acknowledges nothing new and does not open the window (RFC 5681's definition): a STATE
        // that only says the reader freed buffer space (a window update) is no sign of a lost packet.
        if (_curWindowPackets > 0 && acks == 0 && type == UtpPacketType.State &&
            h.AckNumber == (ushort)(oldest - 1) && h.WindowSize <= _peerWindow)
        {
            _dupAcks++;
        }
        else if (acks > 0)
        {
            _dupAcks = 0;
        }

        var ackedBytes = 0;
        var minRtt = long.MaxValue;
        for (var i = 0; i < acks; i++)
        {
            ref var slot = ref _out[(ushort)(oldest + i) & _mask];
            AckSlot(ref slot, now, ref ackedBytes, ref minRtt);
            if (slot.NeedResend)
            {
                slot.NeedResend = false;
                _resendPending--;
            }

            slot.Transmissions = 0;
            slot.Acked = false;
        }

        _curWindowPackets -= acks;
        oldest = (ushort)(oldest + acks);
        if (_inRecovery && SeqLess(_recoverySeq, oldest))
        {
            _inRecovery = false;
        }

        var progress = acks > 0;
        var lost = false;
        var sack = h.SelectiveAck;
        if (!sack.IsEmpty && _curWindowPackets > 0)
        {
            var sackBase = (ushort)(h.AckNumber + 2);
            var bits = sack.Length * 8;
            var highest = -1;
            for (var i = 0; i < bits; i++)
            {
                if ((sack[i >> 3] & (1 << (i & 7))) == 0)
                {
                    continue;
                }

                var off = (ushort)((ushort)(sackBase + i) - oldest);
                if (off >= _curWindowPackets)
                {
                    break;
                }

                highest = i;
                ref var slot = ref _out[(ushort)(sackBase + i) & _mask];
                if (slot.Transmissions > 0 && !slot.Acked)
                {
                    AckSlot(ref slot, now, ref ackedBytes, ref minRtt);
                    slot.Acked = true;
                    if (slot.NeedResend)
                    {
                        slot.NeedResend = false;
                        _resendPending--;
                    }

                    progress = true;
                }
            }

            // A packet with at least three selectively acknowledged packets after it is lost.
            var count = 0;
            var resent = 0;
            for (var i = highest; i >= -1 && resent < MaxFastResendsPerAck; i--)
            {
                var seq = (ushort)(sackBase + i);
                if (i >= 0 && (sack[i >> 3] & (1 << (i & 7))) != 0)
                {
                    count++;
                    continue;
                }

                if (count < DuplicateAcksBeforeResend || (ushort)(seq - oldest) >= _curWindowPackets)
                {
                    continue;
                }

                ref var slot = ref _out[seq & _mask];
                if (slot.Transmissions > 0 && !slot.Acked && !slot.NeedResend && MayFastResend(slot, now))
                {
                    lost = true;
                    FastResend(ref slot, now);
                    resent++;
                }
            }
        }

        if (_probing && acks > 0)
        {
            // The probe's ACK: the peer has exactly up to the probed packet, so what it does not acknowledge
            // selectively of the rest of the flight, sent a probe time ago, is lost too (a peer that was only slow
            // would have acknowledged more than the one; selectively acknowledged packets stay as they are).
            _probing = false;
            if (h.AckNumber == _probeSeq && _curWindowPackets > 0)
            {
                lost = true;
                MarkOutstandingLost();
            }
        }

        if (_dupAcks >= DuplicateAcksBeforeResend && _curWindowPackets > 0)
        {
            ref var slot = ref _out[oldest & _mask];
            if (slot.Transmissions > 0 && !slot.Acked && !slot.NeedResend && MayFastResend(slot, now))
            {
                lost = true;
                FastResend(ref slot, now);
            }
        }

        if (minRtt != long.MaxValue)
        {
            UpdateRtt(minRtt);
        }

        var delay = h.TimestampDifferenceMicroseconds;
        if (delay != 0 && delay != int.MaxValue && ackedBytes > 0)
        {
            _ourDelay.Add(delay, now);
            if (minRtt != long.MaxValue && _ourDelay.QueuingDelay > minRtt)
            {
                _ourDelay.Shift((uint)(_ourDelay.QueuingDelay - minRtt));
            }
        }

        if (lost)
        {
            OnLoss();
        }
        else if (ackedBytes > 0)
        {
            ApplyLedbat(ackedBytes);
        }

        _peerWindow = h.WindowSize;

        if (progress)
        {
            _lastProgress = now;
            _probes = 0;
            _rto = _haveRtt ? Math.Clamp(_rtt + 4 * _rttVar, _minRto, _maxRto) : _rto;
            _rtoDeadline = _curWindowPackets > 0 ? now + _rto : 0;
        }

        if (_finSent && _curWindowPackets == 0)
        {
            _finAcked = true;
        }

        if (Drained)
        {
            FlushSignal.Set();
        }
    }

    private void AckSlot(ref OutPacket slot, long now, ref int ackedBytes, ref long minRtt)
    {
        if (slot.Transmissions == 0 || slot.Acked)
        {
            return;
        }

        ackedBytes += slot.Payload;
        if (slot.InFlight)
        {
            slot.InFlight = false;
            _inFlightBytes -= slot.Payload;
        }

        if (slot.Transmissions == 1)
        {
            // Karn: only packets sent once give an unambiguous round trip.
            minRtt = Math.Min(minRtt, Math.Max(0, now - slot.SentMicros));
        }
    }

    private void UpdateRtt(long sample)
    {
        if (!_haveRtt)
        {
            _haveRtt = true;
            _rtt = sample;
            _rttVar = sample / 2;
        }
        else
        {
            // BEP 29: delta = rtt - packet_rtt; rtt_var += (|delta| - rtt_var) / 4; rtt += (packet_rtt - rtt) / 8
            var delta = _rtt - sample;
            _rttVar += (Math.Abs(delta) - _rttVar) / 4;
            _rtt += (sample - _rtt) / 8;
        }
    }

    private void ApplyLedbat(int ackedBytes)
    {
        var queuing = (long)_ourDelay.QueuingDelay;
        var flightBefore = _inFlightBytes + ackedBytes;
        var cwndLimited = flightBefore + _mss >= _cwnd;
        if (_slowStart)
        {
            if (queuing > _target * 9 / 10)
            {
                _slowStart = false;
                _ssthresh = _cwnd;
            }
            else if (cwndLimited)
            {
                _cwnd += ackedBytes;
                if (_cwnd >= _ssthresh)
                {
                    _slowStart = false;
                }
            }
        }
        else
        {
            // RFC 6817: cwnd += GAIN * off_target * bytes_newly_acked * MSS / cwnd, with GAIN = 1; growth only
            // while the window is what limits the sender.
            var offTarget = Math.Clamp((double)(_target - queuing) / _target, -1.0, 1.0);
            if (offTarget < 0 || cwndLimited)
            {
                _cwnd += offTarget * ackedBytes * _mss / _cwnd;
            }
        }

        _cwnd = Math.Clamp(_cwnd, 2.0 * _mss, (double)_mss * _mask);
    }

    private void OnLoss()
    {
        if (_inRecovery)
        {
            return;
        }

        _inRecovery = true;
        _recoverySeq = (ushort)(_seqNr - 1);
        _cwnd = Math.Max(_cwnd / 2, 2.0 * _mss);
        _ssthresh = _cwnd;
        _slowStart = false;
    }

    /// <summary>A packet is fast-resent once; again only if that copy has had two round trips to be acknowledged
    /// and the ACKs still say it is missing (the resend was lost too), instead of waiting for the RTO.</summary>
    private bool MayFastResend(in OutPacket slot, long now) =>
        !slot.FastResent || (_haveRtt && now - slot.SentMicros >= Math.Max(2 * _rtt, 2_000));

    private void FastResend(ref OutPacket slot, long now)
    {
        slot.FastResent = true;
        FastRetransmissions++;
        Retransmissions++;
        _owner.RetransmissionsTotal++;
        if (slot.InFlight)
        {
            slot.InFlight = false;
            _inFlightBytes -= slot.Payload;
        }

        Transmit(ref slot, now);
    }

    // ---------------------------------------------------------------- outgoing

    private void EnsureBuffer(ref OutPacket slot, int size)
    {
        if (slot.Buffer is null || slot.Buffer.Length < size)
        {
            if (slot.Buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(slot.Buffer);
            }

            slot.Buffer = ArrayPool<byte>.Shared.Rent(Math.Max(size, _datagramSize));
        }
    }

    private uint AdvertisedWindow => (uint)Math.Max(0, _recvBuffer.Free - _reorderBytes);

    private void Transmit(ref OutPacket slot, long now)
    {
        slot.Transmissions++;
        slot.SentMicros = now;
        if (!slot.InFlight)
        {
            slot.InFlight = true;
            _inFlightBytes += slot.Payload;
        }

        var window = AdvertisedWindow;
        UtpHeader.Refresh(slot.Buffer, (uint)now, _replyMicro, window, _ackNr);
        _lastAdvertised = (int)window;
        // A send still reading the slot's buffer keeps it: the slot goes on with the copy Send hands back.
        slot.Buffer = _owner.Send(slot.Buffer!, slot.Length, Remote);
        PacketsSent++;
        _lastSent = now;
        _unackedPackets = 0;
        AckDeferred = false;

        if (_rtoDeadline == 0)
        {
            _rtoDeadline = now + _rto;
        }
    }

    private bool WindowAllows(int payload)
    {
        if (_inFlightBytes == 0)
        {
            return _peerWindow >= (uint)payload || _peerWindow >= (uint)_mss;
        }

        return _inFlightBytes + payload <= Math.Min(_cwnd, _peerWindow);
    }

    /// <summary>Sends what the windows allow: lost packets first, then new data, then the FIN.</summary>
    public void TrySend(long now)
    {
        if (State != ConnectionState.Connected)
        {
            return;
        }

        if (_resendPending > 0)
        {
            var oldest = (ushort)(_seqNr - _curWindowPackets);
            for (var i = 0; i < _curWindowPackets && _resendPending > 0; i++)
            {
                ref var slot = ref _out[(ushort)(oldest + i) & _mask];
                if (!slot.NeedResend)
                {
                    continue;
                }

                if (!WindowAllows(slot.Payload))
                {
                    return;
                }

                slot.NeedResend = false;
                _resendPending--;
                Retransmissions++;
                _owner.RetransmissionsTotal++;
                Transmit(ref slot, now);
            }

            if (_resendPending > 0)
            {
                return;
            }
        }

        var dequeued = false;
        while (_curWindowPackets < _mask && !_finSent)
        {
            var available = _sendQueue.Count;
            if (available == 0)
            {
                if (_writeShutdown)
                {
                    SendNew(UtpPacketType.Fin, 0, now);
                    _finSent = true;
                }

                break;
            }

            var n = Math.Min(available, _mss);
            if (n < _mss && _corked && !_writeShutdown && now < _corkDeadline)
            {
                break; // corked: a short packet waits for the rest of the burst (Uncork, or a tick at most)
            }

            if (!WindowAllows(n))
            {
                break;
            }

            SendNew(UtpPacketType.Data, n, now);
            dequeued = true;
        }

        if (dequeued)
        {
            WriteSignal.Set();
        }
    }

    private void SendNew(UtpPacketType type, int payload, long now)
    {
        ref var slot = ref _out[_seqNr & _mask];
        EnsureBuffer(ref slot, UtpHeader.Size + payload);
        UtpHeader.Write(slot.Buffer, type, 0, SendId, 0, 0, 0, _seqNr, _ackNr);
        if (payload > 0)
        {
            _sendQueue.Read(slot.Buffer.AsSpan(UtpHeader.Size, payload));
        }

        slot.Length = UtpHeader.Size + payload;
        slot.Payload = payload;
        slot.Transmissions = 0;
        slot.InFlight = false;
        slot.NeedResend = false;
        slot.Acked = false;
        slot.FastResent = false;
        if (_curWindowPackets == 0)
        {
            _lastProgress = now; // the ACK clock starts with the first packet outstanding
        }

        _seqNr++;
        _curWindowPackets++;
        Transmit(ref slot, now);
    }

    /// <summary>Sends a STATE: cumulative ack_nr, our receive window and, when packets wait for reordering, a
    /// selective ACK of what arrived past the gap.</summary>
    public void SendState(long now) => SendControl(UtpPacketType.State, _seqNr, now);

    private void SendControl(UtpPacketType type, ushort seq, long now)
    {
        var buffer = _owner.Scratch;
        var extension = _reorderCount > 0 && type == UtpPacketType.State ? UtpHeader.SelectiveAckExtension : (byte)0;
        var window = AdvertisedWindow;
        UtpHeader.Write(buffer, type, extension, SendId, (uint)now, _replyMicro, window, seq, _ackNr);
        var length = UtpHeader.Size;
        if (extension != 0)
        {
            Span<byte> mask = stackalloc byte[MaxSackBytes];
            mask.Clear();
            var highest = -1;
            for (var i = 0; i < MaxSackBytes * 8; i++)
            {
                ref var slot = ref _in[(ushort)(_ackNr + 2 + i) & _mask];
                if (i + 2 > _mask)
                {
                    break;
                }

                if (slot.Present)
                {
                    mask[i >> 3] |= (byte)(1 << (i & 7));
                    highest = i;
                }
            }

            var bytes = Math.Max(4, ((highest / 8) + 4) & ~3);
            length += UtpHeader.WriteSelectiveAck(buffer.AsSpan(length), 0, mask[..bytes]);
        }

        _lastAdvertised = (int)window;
        _owner.SendScratch(length, Remote);
        _lastSent = now;
        _unackedPackets = 0;
        AckDeferred = false;
    }

    /// <summary>Sends the ACK that was held back to batch several packets into one.</summary>
    public void FlushAck(long now)
    {
        if (AckDeferred && State is ConnectionState.Connected or ConnectionState.Closed)
        {
            SendState(now);
        }
    }

    // ---------------------------------------------------------------- timers

    public void OnTick(long now)
    {
        switch (State)
        {
            case ConnectionState.SynSent:
                if (now >= _rtoDeadline)
                {
                    if (_synRetries >= _options.SynRetries)
                    {
                        Fail(new NetworkException(SocketError.TimedOut,
                            $"uTP connect to {Remote} timed out: no answer to the SYN after {_synRetries} retries"));
                        return;
                    }

                    _synRetries++;
                    _rto *= 2;
                    Retransmissions++;
                    Transmit(ref _out[(ushort)(_seqNr - 1) & _mask], now);
                    _rtoDeadline = now + _rto;
                }

                return;

            case ConnectionState.Connected:
                break;

            case ConnectionState.Closed:
                if (now >= _lingerUntil)
                {
                    _owner.Remove(this);
                }

                return;

            default:
                return;
        }

        var dead = Micros(_options.DeadPeerTimeout);
        if (now - _lastReceived >= dead || (_curWindowPackets > 0 && now - _lastProgress >= dead))
        {
            Fail(new NetworkException(SocketError.TimedOut,
                $"uTP peer {Remote} went silent: no acknowledgement for {_options.DeadPeerTimeout.TotalSeconds:0.#} s"));
            return;
        }

        if (_curWindowPackets > 0 && _rtoDeadline != 0 && now >= _rtoDeadline)
        {
            OnTimeout(now);
        }
        else if (_curWindowPackets > 0 && _probes < 2 && _haveRtt &&
                 now - _lastProgress >= (_probes + 1) * Math.Max(2 * _rtt + 4 * _rttVar, 10_000))
        {
            OnProbeTimeout(now);
        }
        else if (_curWindowPackets == 0)
        {
            var keepAlive = Micros(_options.KeepAliveInterval);
            var zeroWindow = _sendQueue.Count > 0 && !WindowAllows(Math.Min(_sendQueue.Count, _mss));
            var interval = zeroWindow ? Math.Min(keepAlive, _rto) : keepAlive;
            if (now - _lastReceived >= interval && now - _lastProbe >= interval)
            {
                SendProbe(now);
            }
        }

        if (AckDeferred)
        {
            SendState(now);
        }

        TrySend(now);
        CheckClosed(now);
    }

    /// <summary>An empty DATA packet with the last sequence number the peer already has: harmless to the stream,
    /// and BEP 29 peers (libutp too) answer an old sequence number with a STATE, which proves the peer alive and
    /// refreshes its window. Sent only when nothing is in flight, so the number is surely acknowledged.</summary>
    private void SendProbe(long now)
    {
        _lastProbe = now;
        SendControl(UtpPacketType.Data, (ushort)(_seqNr - 1), now);
    }

    /// <summary>
    /// Nothing acknowledged for about two round trips while packets are outstanding: either the tail of a burst was
    /// lost, so no later packet will produce the selective ACKs that trigger a fast retransmit, or the peer is slow
    /// to read (a busy machine: its process not scheduled for a tick) and everything is still on its way. Rather than
    /// idle until the 500 ms RTO, probe (RFC 8985's tail loss probe): send the oldest unacknowledged packet again, and
    /// change nothing else, so a slow peer costs one duplicate, not a resent flight and a halved window. Its ACK is
    /// progress (the probe repaired the loss, or the peer caught up) and re-arms the probe for what may still be
    /// missing. No progress a second probe time later: one loss event, the window halves and the whole flight is
    /// resent. A third silence is a real timeout.
    /// </summary>
    private void OnProbeTimeout(long now)
    {
        _probes++;
        if (_probes >= 2)
        {
            OnLoss();
            MarkOutstandingLost();
            return;
        }

        var oldest = (ushort)(_seqNr - _curWindowPackets);
        for (var i = 0; i < _curWindowPackets; i++)
        {
            ref var slot = ref _out[(ushort)(oldest + i) & _mask];
            if (slot.Transmissions == 0 || slot.Acked || slot.NeedResend)
            {
                continue;
            }

            Retransmissions++;
            _owner.RetransmissionsTotal++;
            _probing = true;
            _probeSeq = (ushort)(oldest + i);
            Transmit(ref slot, now);
            return;
        }
    }

    private void MarkOutstandingLost()
    {
        var oldest = (ushort)(_seqNr - _curWindowPackets);
        for (var i = 0; i < _curWindowPackets; i++)
        {
            ref var slot = ref _out[(ushort)(oldest + i) & _mask];
            if (slot.Transmissions == 0 || slot.Acked)
            {
                continue;
            }

            if (slot.InFlight)
            {
                slot.InFlight = false;
                _inFlightBytes -= slot.Payload;
            }

            slot.FastResent = false;
            if (!slot.NeedResend)
            {
                slot.NeedResend = true;
                _resendPending++;
            }
        }
    }

    private void OnTimeout(long now)
    {
        Timeouts++;
        _owner.TimeoutsTotal++;
        _ssthresh = Math.Max(_cwnd / 2, 2.0 * _mss);
        _cwnd = _mss;
        _slowStart = true;
        _inRecovery = false;
        MarkOutstandingLost();
        _rto = Math.Min(_rto * 2, _maxRto);
        _rtoDeadline = now + _rto;
    }

    // ---------------------------------------------------------------- user side

    public int Read(Span<byte> destination, long now)
    {
        var n = _recvBuffer.Read(destination);
        if (n > 0 && State == ConnectionState.Connected)
        {
            var window = (int)AdvertisedWindow;
            var step = Math.Max(4 * _mss, _recvBuffer.Capacity / 4);
            if (window - _lastAdvertised >= step)
            {
                SendState(now); // the reader freed a good part of the window: tell the sender
            }
        }

        return n;
    }

    public int Write(ReadOnlySpan<byte> source, long now)
    {
        var n = _sendQueue.Write(source);
        if (_corked)
        {
            _corkDeadline = now + Micros(_options.TickInterval);
        }

        TrySend(now);
        return n;
    }

    /// <summary>Until <see cref="Uncork"/>, new data leaves only in full-size packets: a short remainder waits for
    /// the next write, at most one <see cref="UtpOptions.TickInterval"/> after the last one (the tick sends it), and
    /// never past a shutdown (the FIN follows everything queued).</summary>
    public void Cork(long now)
    {
        _corked = true;
        _corkDeadline = now + Micros(_options.TickInterval);
    }

    /// <summary>Ends <see cref="Cork"/>: what was held back leaves now, as far as the windows allow.</summary>
    public void Uncork(long now)
    {
        if (_corked)
        {
            _corked = false;
            TrySend(now);
        }
    }

    public void ShutdownWrite(long now)
    {
        if (_writeShutdown)
        {
            return;
        }

        _writeShutdown = true;
        TrySend(now);
    }

    /// <summary>The user is done: send what is queued, then the FIN; discard what still arrives.</summary>
    public void Close(long now)
    {
        if (_userClosed)
        {
            return;
        }

        _userClosed = true;
        if (State == ConnectionState.SynSent)
        {
            Fail(new ObjectDisposedException(nameof(UtpStream)));
            return;
        }

        ShutdownWrite(now);
        CheckClosed(now);
    }

    private void CheckClosed(long now)
    {
        if (State != ConnectionState.Connected || !_finAcked || !(_eof || _userClosed))
        {
            return;
        }

        State = ConnectionState.Closed;
        _lingerUntil = now + Micros(_options.Linger);
        ReadSignal.Set();
        WriteSignal.Set();
        FlushSignal.Set();
    }

    public void Fail(Exception error)
    {
        if (State == ConnectionState.Failed)
        {
            return;
        }

        State = ConnectionState.Failed;
        Error = error;
        if (error is not ObjectDisposedException and not OperationCanceledException)
        {
            _owner.ConnectionsFailed++;
        }

        ReadSignal.Set();
        WriteSignal.Set();
        FlushSignal.Set();
        ConnectSignal.Set();
        _owner.Remove(this);
    }

    /// <summary>Returns the rented slot buffers (called once the connection leaves the endpoint's table).</summary>
    public void Release()
    {
        for (var i = 0; i < _out.Length; i++)
        {
            if (_out[i].Buffer is { } b)
            {
                ArrayPool<byte>.Shared.Return(b);
                _out[i].Buffer = null;
            }

            if (_in[i].Buffer is { } c)
            {
                ArrayPool<byte>.Shared.Return(c);
                _in[i].Buffer = null;
            }
        }
    }
}

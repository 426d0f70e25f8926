//! A minimal protobuf encoder for building test messages by hand.

#[derive(Clone, Default)]
pub struct Msg(pub Vec<u8>);

pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Msg {
    pub fn new() -> Msg {
        Msg(Vec::new())
    }
    fn key(mut self, field: u32, wire: u8) -> Msg {
        put_varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
        self
    }
    pub fn varint(self, field: u32, v: u64) -> Msg {
        let mut m = self.key(field, 0);
        put_varint(&mut m.0, v);
        m
    }
    pub fn int(self, field: u32, v: i64) -> Msg {
        self.varint(field, v as u64)
    }
    pub fn fixed32(self, field: u32, v: u32) -> Msg {
        let mut m = self.key(field, 5);
        m.0.extend_from_slice(&v.to_le_bytes());
        m
    }
    pub fn float(self, field: u32, v: f32) -> Msg {
        self.fixed32(field, v.to_bits())
    }
    pub fn fixed64(self, field: u32, v: u64) -> Msg {
        let mut m = self.key(field, 1);
        m.0.extend_from_slice(&v.to_le_bytes());
        m
    }
    pub fn bytes(self, field: u32, b: &[u8]) -> Msg {
        let mut m = self.key(field, 2);
        put_varint(&mut m.0, b.len() as u64);
        m.0.extend_from_slice(b);
        m
    }
    pub fn str(self, field: u32, s: &str) -> Msg {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(self, field: u32, m: Msg) -> Msg {
        self.bytes(field, &m.0)
    }
    pub fn packed_ints(self, field: u32, vs: &[i64]) -> Msg {
        let mut body = Vec::new();
        for &v in vs {
            put_varint(&mut body, v as u64);
        }
        self.bytes(field, &body)
    }
    pub fn packed_floats(self, field: u32, vs: &[f32]) -> Msg {
        let body: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &body)
    }
    pub fn packed_doubles(self, field: u32, vs: &[f64]) -> Msg {
        let body: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &body)
    }
    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

/// A `TensorProto` with name, data type and dims.
pub fn tensor(name: &str, data_type: i32, dims: &[i64]) -> Msg {
    Msg::new()
        .str(8, name)
        .int(2, i64::from(data_type))
        .packed_ints(1, dims)
}

//! WebP lossy (VP8 key frame, RFC 6386) decoding into RGB that reproduces libwebp's default
//! output bit for bit: boolean entropy decoder, segment / quantizer / loop-filter headers,
//! coefficient probabilities with updates, intra prediction (16x16, 4x4 and chroma, with
//! libwebp's edge conventions), inverse DCT and WHT, simple and normal loop filters, then
//! libwebp's "fancy" chroma upsampling and 14-bit fixed-point YUV → RGB conversion.
//!
//! The modes of all macroblocks are parsed first (a truncated first partition is an error
//! before any frame buffer is allocated); prediction works in place on bordered planes and
//! uses unfiltered pixels; the loop filter runs once the frame is reconstructed.

use super::webp::bad;
use super::zeroed;
use crate::error::OpResult;

// Intra modes in the order of RFC 6386 (B_DC_PRED ..); the 16x16 and chroma modes use the
// numbers of their 4x4 counterparts, as libwebp does.
const DC: u8 = 0;
const TM: u8 = 1;
const VE: u8 = 2;
const HE: u8 = 3;

/// Tree of the 4x4 intra modes (RFC 6386 `bmode_tree`); leaves are negated modes.
const BMODE_TREE: [i8; 18] = [0, 2, -1, 4, -2, 6, 8, 12, -3, 10, -5, -6, -4, 14, -7, 16, -8, -9];

/// 4x4 directional predictors (VE .. HU): for each pixel, an index into the edge array
/// [L, L, K, J, I, X, A, B, C, D, E, F, G, H, H] (left column bottom-up, top-left, top row and
/// top-right); the value is (e[i-1] + 2 e[i] + e[i+1] + 2) >> 2, or (e[i] + e[i+1] + 1) >> 1
/// when bit 7 is set.
const PRED4: [[u8; 16]; 8] = {
    const A: u8 = 0x80;
    [
        [6, 7, 8, 9, 6, 7, 8, 9, 6, 7, 8, 9, 6, 7, 8, 9],
        [4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1],
        [7, 8, 9, 10, 8, 9, 10, 11, 9, 10, 11, 12, 10, 11, 12, 13],
        [5, 6, 7, 8, 4, 5, 6, 7, 3, 4, 5, 6, 2, 3, 4, 5],
        [A | 5, A | 6, A | 7, A | 8, 5, 6, 7, 8, 4, A | 5, A | 6, A | 7, 3, 5, 6, 7],
        [A | 6, A | 7, A | 8, A | 9, 7, 8, 9, 10, A | 7, A | 8, A | 9, 11, 8, 9, 10, 12],
        [A | 4, 5, 6, 7, A | 3, 4, A | 4, 5, A | 2, 3, A | 3, 4, A | 1, 2, A | 2, 3],
        [A | 3, 3, A | 2, 2, A | 2, 2, A | 1, 1, A | 1, 1, A, A, A, A, A, A],
    ]
};

const ZIGZAG: [u8; 16] = [0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15];
/// Probability band of each coefficient position (and of the position past the last).
const BANDS: [u8; 17] = [0, 1, 2, 3, 6, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 0];
/// Extra-bit probabilities of the DCT_CAT3..6 tokens, each list ending with 0.
const CAT_PROBS: [u8; 27] =
    [173, 148, 140, 0, 176, 155, 140, 135, 0, 180, 157, 141, 134, 130, 0, 254, 254, 243, 230, 196, 177, 153, 140, 133, 130, 129, 0];

/// Probabilities of the 4x4 mode tree, by the modes above and left (RFC 6386 `kf_bmode_probs`).
const BMODE_PROBS: [u8; 900] = [
    231, 120, 48, 89, 115, 113, 120, 152, 112, 152, 179, 64, 126, 170, 118, 46, 70, 95, 175, 69, 143, 80, 85, 82, 72, 155, 103,
    56, 58, 10, 171, 218, 189, 17, 13, 152, 144, 71, 10, 38, 171, 213, 144, 34, 26, 114, 26, 17, 163, 44, 195, 21, 10, 173,
    121, 24, 80, 195, 26, 62, 44, 64, 85, 170, 46, 55, 19, 136, 160, 33, 206, 71, 63, 20, 8, 114, 114, 208, 12, 9, 226,
    81, 40, 11, 96, 182, 84, 29, 16, 36, 134, 183, 89, 137, 98, 101, 106, 165, 148, 72, 187, 100, 130, 157, 111, 32, 75, 80,
    66, 102, 167, 99, 74, 62, 40, 234, 128, 41, 53, 9, 178, 241, 141, 26, 8, 107, 104, 79, 12, 27, 217, 255, 87, 17, 7,
    74, 43, 26, 146, 73, 166, 49, 23, 157, 65, 38, 105, 160, 51, 52, 31, 115, 128, 87, 68, 71, 44, 114, 51, 15, 186, 23,
    47, 41, 14, 110, 182, 183, 21, 17, 194, 66, 45, 25, 102, 197, 189, 23, 18, 22, 88, 88, 147, 150, 42, 46, 45, 196, 205,
    43, 97, 183, 117, 85, 38, 35, 179, 61, 39, 53, 200, 87, 26, 21, 43, 232, 171, 56, 34, 51, 104, 114, 102, 29, 93, 77,
    107, 54, 32, 26, 51, 1, 81, 43, 31, 39, 28, 85, 171, 58, 165, 90, 98, 64, 34, 22, 116, 206, 23, 34, 43, 166, 73,
    68, 25, 106, 22, 64, 171, 36, 225, 114, 34, 19, 21, 102, 132, 188, 16, 76, 124, 62, 18, 78, 95, 85, 57, 50, 48, 51,
    193, 101, 35, 159, 215, 111, 89, 46, 111, 60, 148, 31, 172, 219, 228, 21, 18, 111, 112, 113, 77, 85, 179, 255, 38, 120, 114,
    40, 42, 1, 196, 245, 209, 10, 25, 109, 100, 80, 8, 43, 154, 1, 51, 26, 71, 88, 43, 29, 140, 166, 213, 37, 43, 154,
    61, 63, 30, 155, 67, 45, 68, 1, 209, 142, 78, 78, 16, 255, 128, 34, 197, 171, 41, 40, 5, 102, 211, 183, 4, 1, 221,
    51, 50, 17, 168, 209, 192, 23, 25, 82, 125, 98, 42, 88, 104, 85, 117, 175, 82, 95, 84, 53, 89, 128, 100, 113, 101, 45,
    75, 79, 123, 47, 51, 128, 81, 171, 1, 57, 17, 5, 71, 102, 57, 53, 41, 49, 115, 21, 2, 10, 102, 255, 166, 23, 6,
    38, 33, 13, 121, 57, 73, 26, 1, 85, 41, 10, 67, 138, 77, 110, 90, 47, 114, 101, 29, 16, 10, 85, 128, 101, 196, 26,
    57, 18, 10, 102, 102, 213, 34, 20, 43, 117, 20, 15, 36, 163, 128, 68, 1, 26, 138, 31, 36, 171, 27, 166, 38, 44, 229,
    67, 87, 58, 169, 82, 115, 26, 59, 179, 63, 59, 90, 180, 59, 166, 93, 73, 154, 40, 40, 21, 116, 143, 209, 34, 39, 175,
    57, 46, 22, 24, 128, 1, 54, 17, 37, 47, 15, 16, 183, 34, 223, 49, 45, 183, 46, 17, 33, 183, 6, 98, 15, 32, 183,
    65, 32, 73, 115, 28, 128, 23, 128, 205, 40, 3, 9, 115, 51, 192, 18, 6, 223, 87, 37, 9, 115, 59, 77, 64, 21, 47,
    104, 55, 44, 218, 9, 54, 53, 130, 226, 64, 90, 70, 205, 40, 41, 23, 26, 57, 54, 57, 112, 184, 5, 41, 38, 166, 213,
    30, 34, 26, 133, 152, 116, 10, 32, 134, 75, 32, 12, 51, 192, 255, 160, 43, 51, 39, 19, 53, 221, 26, 114, 32, 73, 255,
    31, 9, 65, 234, 2, 15, 1, 118, 73, 88, 31, 35, 67, 102, 85, 55, 186, 85, 56, 21, 23, 111, 59, 205, 45, 37, 192,
    55, 38, 70, 124, 73, 102, 1, 34, 98, 102, 61, 71, 37, 34, 53, 31, 243, 192, 69, 60, 71, 38, 73, 119, 28, 222, 37,
    68, 45, 128, 34, 1, 47, 11, 245, 171, 62, 17, 19, 70, 146, 85, 55, 62, 70, 75, 15, 9, 9, 64, 255, 184, 119, 16,
    37, 43, 37, 154, 100, 163, 85, 160, 1, 63, 9, 92, 136, 28, 64, 32, 201, 85, 86, 6, 28, 5, 64, 255, 25, 248, 1,
    56, 8, 17, 132, 137, 255, 55, 116, 128, 58, 15, 20, 82, 135, 57, 26, 121, 40, 164, 50, 31, 137, 154, 133, 25, 35, 218,
    51, 103, 44, 131, 131, 123, 31, 6, 158, 86, 40, 64, 135, 148, 224, 45, 183, 128, 22, 26, 17, 131, 240, 154, 14, 1, 209,
    83, 12, 13, 54, 192, 255, 68, 47, 28, 45, 16, 21, 91, 64, 222, 7, 1, 197, 56, 21, 39, 155, 60, 138, 23, 102, 213,
    85, 26, 85, 85, 128, 128, 32, 146, 171, 18, 11, 7, 63, 144, 171, 4, 4, 246, 35, 27, 10, 146, 174, 171, 12, 26, 128,
    190, 80, 35, 99, 180, 80, 126, 54, 45, 85, 126, 47, 87, 176, 51, 41, 20, 32, 101, 75, 128, 139, 118, 146, 116, 128, 85,
    56, 41, 15, 176, 236, 85, 37, 9, 62, 146, 36, 19, 30, 171, 255, 97, 27, 20, 71, 30, 17, 119, 118, 255, 17, 18, 138,
    101, 38, 60, 138, 55, 70, 43, 26, 142, 138, 45, 61, 62, 219, 1, 81, 188, 64, 32, 41, 20, 117, 151, 142, 20, 21, 163,
    112, 19, 12, 61, 195, 128, 48, 4, 24,
];
/// Default token probabilities [type][band][context][node] (RFC 6386 `default_coeff_probs`).
const COEFF_PROBS: [u8; 1056] = [
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    253, 136, 254, 255, 228, 219, 128, 128, 128, 128, 128, 189, 129, 242, 255, 227, 213, 255, 219, 128, 128, 128, 106, 126, 227, 252, 214, 209, 255, 255, 128, 128, 128,
    1, 98, 248, 255, 236, 226, 255, 255, 128, 128, 128, 181, 133, 238, 254, 221, 234, 255, 154, 128, 128, 128, 78, 134, 202, 247, 198, 180, 255, 219, 128, 128, 128,
    1, 185, 249, 255, 243, 255, 128, 128, 128, 128, 128, 184, 150, 247, 255, 236, 224, 128, 128, 128, 128, 128, 77, 110, 216, 255, 236, 230, 128, 128, 128, 128, 128,
    1, 101, 251, 255, 241, 255, 128, 128, 128, 128, 128, 170, 139, 241, 252, 236, 209, 255, 255, 128, 128, 128, 37, 116, 196, 243, 228, 255, 255, 255, 128, 128, 128,
    1, 204, 254, 255, 245, 255, 128, 128, 128, 128, 128, 207, 160, 250, 255, 238, 128, 128, 128, 128, 128, 128, 102, 103, 231, 255, 211, 171, 128, 128, 128, 128, 128,
    1, 152, 252, 255, 240, 255, 128, 128, 128, 128, 128, 177, 135, 243, 255, 234, 225, 128, 128, 128, 128, 128, 80, 129, 211, 255, 194, 224, 128, 128, 128, 128, 128,
    1, 1, 255, 128, 128, 128, 128, 128, 128, 128, 128, 246, 1, 255, 128, 128, 128, 128, 128, 128, 128, 128, 255, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    198, 35, 237, 223, 193, 187, 162, 160, 145, 155, 62, 131, 45, 198, 221, 172, 176, 220, 157, 252, 221, 1, 68, 47, 146, 208, 149, 167, 221, 162, 255, 223, 128,
    1, 149, 241, 255, 221, 224, 255, 255, 128, 128, 128, 184, 141, 234, 253, 222, 220, 255, 199, 128, 128, 128, 81, 99, 181, 242, 176, 190, 249, 202, 255, 255, 128,
    1, 129, 232, 253, 214, 197, 242, 196, 255, 255, 128, 99, 121, 210, 250, 201, 198, 255, 202, 128, 128, 128, 23, 91, 163, 242, 170, 187, 247, 210, 255, 255, 128,
    1, 200, 246, 255, 234, 255, 128, 128, 128, 128, 128, 109, 178, 241, 255, 231, 245, 255, 255, 128, 128, 128, 44, 130, 201, 253, 205, 192, 255, 255, 128, 128, 128,
    1, 132, 239, 251, 219, 209, 255, 165, 128, 128, 128, 94, 136, 225, 251, 218, 190, 255, 255, 128, 128, 128, 22, 100, 174, 245, 186, 161, 255, 199, 128, 128, 128,
    1, 182, 249, 255, 232, 235, 128, 128, 128, 128, 128, 124, 143, 241, 255, 227, 234, 128, 128, 128, 128, 128, 35, 77, 181, 251, 193, 211, 255, 205, 128, 128, 128,
    1, 157, 247, 255, 236, 231, 255, 255, 128, 128, 128, 121, 141, 235, 255, 225, 227, 255, 255, 128, 128, 128, 45, 99, 188, 251, 195, 217, 255, 224, 128, 128, 128,
    1, 1, 251, 255, 213, 255, 128, 128, 128, 128, 128, 203, 1, 248, 255, 255, 128, 128, 128, 128, 128, 128, 137, 1, 177, 255, 224, 255, 128, 128, 128, 128, 128,
    253, 9, 248, 251, 207, 208, 255, 192, 128, 128, 128, 175, 13, 224, 243, 193, 185, 249, 198, 255, 255, 128, 73, 17, 171, 221, 161, 179, 236, 167, 255, 234, 128,
    1, 95, 247, 253, 212, 183, 255, 255, 128, 128, 128, 239, 90, 244, 250, 211, 209, 255, 255, 128, 128, 128, 155, 77, 195, 248, 188, 195, 255, 255, 128, 128, 128,
    1, 24, 239, 251, 218, 219, 255, 205, 128, 128, 128, 201, 51, 219, 255, 196, 186, 128, 128, 128, 128, 128, 69, 46, 190, 239, 201, 218, 255, 228, 128, 128, 128,
    1, 191, 251, 255, 255, 128, 128, 128, 128, 128, 128, 223, 165, 249, 255, 213, 255, 128, 128, 128, 128, 128, 141, 124, 248, 255, 255, 128, 128, 128, 128, 128, 128,
    1, 16, 248, 255, 255, 128, 128, 128, 128, 128, 128, 190, 36, 230, 255, 236, 255, 128, 128, 128, 128, 128, 149, 1, 255, 128, 128, 128, 128, 128, 128, 128, 128,
    1, 226, 255, 128, 128, 128, 128, 128, 128, 128, 128, 247, 192, 255, 128, 128, 128, 128, 128, 128, 128, 128, 240, 128, 255, 128, 128, 128, 128, 128, 128, 128, 128,
    1, 134, 252, 255, 255, 128, 128, 128, 128, 128, 128, 213, 62, 250, 255, 255, 128, 128, 128, 128, 128, 128, 55, 93, 255, 128, 128, 128, 128, 128, 128, 128, 128,
    128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
    202, 24, 213, 235, 186, 191, 220, 160, 240, 175, 255, 126, 38, 182, 232, 169, 184, 228, 174, 255, 187, 128, 61, 46, 138, 219, 151, 178, 240, 170, 255, 216, 128,
    1, 112, 230, 250, 199, 191, 247, 159, 255, 255, 128, 166, 109, 228, 252, 211, 215, 255, 174, 128, 128, 128, 39, 77, 162, 232, 172, 180, 245, 178, 255, 255, 128,
    1, 52, 220, 246, 198, 199, 249, 220, 255, 255, 128, 124, 74, 191, 243, 183, 193, 250, 221, 255, 255, 128, 24, 71, 130, 219, 154, 170, 243, 182, 255, 255, 128,
    1, 182, 225, 249, 219, 240, 255, 224, 128, 128, 128, 149, 150, 226, 252, 216, 205, 255, 171, 128, 128, 128, 28, 108, 170, 242, 183, 194, 254, 223, 255, 255, 128,
    1, 81, 230, 252, 204, 203, 255, 192, 128, 128, 128, 123, 102, 209, 247, 188, 196, 255, 233, 128, 128, 128, 20, 95, 153, 243, 164, 173, 255, 203, 128, 128, 128,
    1, 222, 248, 255, 216, 213, 128, 128, 128, 128, 128, 168, 175, 246, 252, 235, 205, 255, 255, 128, 128, 128, 47, 116, 215, 255, 211, 212, 255, 255, 128, 128, 128,
    1, 121, 236, 253, 212, 214, 255, 255, 128, 128, 128, 141, 84, 213, 252, 201, 202, 255, 219, 128, 128, 128, 42, 80, 160, 240, 162, 185, 255, 205, 128, 128, 128,
    1, 1, 255, 128, 128, 128, 128, 128, 128, 128, 128, 244, 1, 255, 128, 128, 128, 128, 128, 128, 128, 128, 238, 1, 255, 128, 128, 128, 128, 128, 128, 128, 128,
];
/// Probabilities that a token probability is updated in the frame header.
const COEFF_UPDATE_PROBS: [u8; 1056] = [
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    176, 246, 255, 255, 255, 255, 255, 255, 255, 255, 255, 223, 241, 252, 255, 255, 255, 255, 255, 255, 255, 255, 249, 253, 253, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 244, 252, 255, 255, 255, 255, 255, 255, 255, 255, 234, 254, 254, 255, 255, 255, 255, 255, 255, 255, 255, 253, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 246, 254, 255, 255, 255, 255, 255, 255, 255, 255, 239, 253, 254, 255, 255, 255, 255, 255, 255, 255, 255, 254, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 248, 254, 255, 255, 255, 255, 255, 255, 255, 255, 251, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 253, 254, 255, 255, 255, 255, 255, 255, 255, 255, 251, 254, 254, 255, 255, 255, 255, 255, 255, 255, 255, 254, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 254, 253, 255, 254, 255, 255, 255, 255, 255, 255, 250, 255, 254, 255, 254, 255, 255, 255, 255, 255, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    217, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 225, 252, 241, 253, 255, 255, 254, 255, 255, 255, 255, 234, 250, 241, 250, 253, 255, 253, 254, 255, 255, 255,
    255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 223, 254, 254, 255, 255, 255, 255, 255, 255, 255, 255, 238, 253, 254, 254, 255, 255, 255, 255, 255, 255, 255,
    255, 248, 254, 255, 255, 255, 255, 255, 255, 255, 255, 249, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 253, 255, 255, 255, 255, 255, 255, 255, 255, 255, 247, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 253, 254, 255, 255, 255, 255, 255, 255, 255, 255, 252, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 254, 254, 255, 255, 255, 255, 255, 255, 255, 255, 253, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 254, 253, 255, 255, 255, 255, 255, 255, 255, 255, 250, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    186, 251, 250, 255, 255, 255, 255, 255, 255, 255, 255, 234, 251, 244, 254, 255, 255, 255, 255, 255, 255, 255, 251, 251, 243, 253, 254, 255, 254, 255, 255, 255, 255,
    255, 253, 254, 255, 255, 255, 255, 255, 255, 255, 255, 236, 253, 254, 255, 255, 255, 255, 255, 255, 255, 255, 251, 253, 253, 254, 254, 255, 255, 255, 255, 255, 255,
    255, 254, 254, 255, 255, 255, 255, 255, 255, 255, 255, 254, 254, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 254, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    248, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 250, 254, 252, 254, 255, 255, 255, 255, 255, 255, 255, 248, 254, 249, 253, 255, 255, 255, 255, 255, 255, 255,
    255, 253, 253, 255, 255, 255, 255, 255, 255, 255, 255, 246, 253, 253, 255, 255, 255, 255, 255, 255, 255, 255, 252, 254, 251, 254, 254, 255, 255, 255, 255, 255, 255,
    255, 254, 252, 255, 255, 255, 255, 255, 255, 255, 255, 248, 254, 253, 255, 255, 255, 255, 255, 255, 255, 255, 253, 255, 254, 254, 255, 255, 255, 255, 255, 255, 255,
    255, 251, 254, 255, 255, 255, 255, 255, 255, 255, 255, 245, 251, 254, 255, 255, 255, 255, 255, 255, 255, 255, 253, 253, 254, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 251, 253, 255, 255, 255, 255, 255, 255, 255, 255, 252, 253, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 252, 255, 255, 255, 255, 255, 255, 255, 255, 255, 249, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 253, 255, 255, 255, 255, 255, 255, 255, 255, 250, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
];
/// Quantizer step of each index for DC and AC coefficients.
const DC_QUANT: [u8; 128] = [
    4, 5, 6, 7, 8, 9, 10, 10, 11, 12, 13, 14, 15, 16, 17, 17, 18, 19, 20, 20, 21, 21, 22, 22, 23, 23, 24, 25, 25, 26, 27, 28,
    29, 30, 31, 32, 33, 34, 35, 36, 37, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58,
    59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89,
    91, 93, 95, 96, 98, 100, 101, 102, 104, 106, 108, 110, 112, 114, 116, 118, 122, 124, 126, 128, 130, 132, 134, 136, 138, 140, 143, 145, 148, 151, 154, 157,
];
const AC_QUANT: [u16; 128] = [
    4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 60, 62, 64, 66, 68, 70, 72, 74, 76,
    78, 80, 82, 84, 86, 88, 90, 92, 94, 96, 98, 100, 102, 104, 106, 108, 110, 112, 114, 116, 119, 122, 125, 128, 131, 134, 137, 140, 143, 146, 149, 152,
    155, 158, 161, 164, 167, 170, 173, 177, 181, 185, 189, 193, 197, 201, 205, 209, 213, 217, 221, 225, 229, 234, 239, 245, 249, 254, 259, 264, 269, 274, 279, 284,
];

/// The boolean entropy decoder, reading bytes one at a time the way libwebp's does at the end
/// of its buffer: reading past the end yields zeros and sets `eof`.
struct Bool<'a> {
    data: &'a [u8],
    pos: usize,
    value: u64,
    /// Range minus one.
    range: u32,
    /// Buffered bits minus 8.
    bits: i32,
    eof: bool,
}

impl<'a> Bool<'a> {
    fn new(data: &'a [u8]) -> Bool<'a> {
        Bool { data, pos: 0, value: 0, range: 254, bits: -8, eof: false }
    }

    fn bit(&mut self, prob: u8) -> bool {
        if self.bits < 0 {
            if let Some(&b) = self.data.get(self.pos) {
                self.pos += 1;
                self.value = self.value << 8 | b as u64;
                self.bits += 8;
            } else if !self.eof {
                self.value <<= 8;
                self.bits += 8;
                self.eof = true;
            } else {
                self.bits = 0;
            }
        }
        let split = (self.range * prob as u32) >> 8;
        let value = (self.value >> self.bits) as u32;
        let bit = value > split;
        let mut range = if bit {
            self.value -= ((split + 1) as u64) << self.bits;
            self.range - split
        } else {
            split + 1
        };
        let shift = range.leading_zeros() as i32 - 24;
        range <<= shift;
        self.bits -= shift;
        self.range = range - 1;
        bit
    }

    fn flag(&mut self) -> bool {
        self.bit(128)
    }

    fn value(&mut self, n: u32) -> i32 {
        (0..n).fold(0, |v, _| v << 1 | self.flag() as i32)
    }

    /// A flag, then if set an `n`-bit magnitude and a sign; 0 when the flag is clear.
    fn opt_signed(&mut self, n: u32) -> i32 {
        if !self.flag() {
            return 0;
        }
        let v = self.value(n);
        if self.flag() {
            -v
        } else {
            v
        }
    }

    /// Walks a token tree (leaves are negated values; index 0 is never a child).
    fn tree(&mut self, tree: &[i8], probs: &[u8]) -> u8 {
        let mut i = 0;
        loop {
            let v = tree[i + self.bit(probs[i >> 1]) as usize];
            if v <= 0 {
                return v.unsigned_abs();
            }
            i = v as usize;
        }
    }
}

/// Per-macroblock modes from the first partition.
#[derive(Clone, Copy)]
struct Mb {
    segment: u8,
    skip: bool,
    i4: bool,
    /// The 16x16 mode in [0], or the sixteen 4x4 modes.
    modes: [u8; 16],
    uv: u8,
}

/// Dequantization factors of one segment: (DC, AC) of Y, Y2 and chroma.
type Quant = [[i32; 2]; 3];

/// A plane with a one-pixel border above and left (and four spare columns right), so
/// prediction can read its neighbours at fixed offsets.
struct Plane {
    px: Vec<u8>,
    stride: usize,
}

impl Plane {
    fn new(w: usize, h: usize) -> OpResult<Plane> {
        let stride = w + 5;
        let mut px = zeroed(stride * (h + 1))?;
        px[..stride].fill(127);
        for row in px.chunks_exact_mut(stride).skip(1) {
            row[0] = 129;
        }
        Ok(Plane { px, stride })
    }

    fn at(&self, x: usize, y: usize) -> usize {
        (y + 1) * self.stride + x + 1
    }

    /// `n` samples of row `y`.
    fn row(&self, y: usize, n: usize) -> &[u8] {
        let o = self.at(0, y);
        &self.px[o..o + n]
    }
}

/// Predicts an `n`x`n` block at `o` with the DC, TM, VE or HE mode; DC averages only the
/// edges that exist (`top`, `left`) and is 128 with neither.
fn predict(p: &mut [u8], o: usize, s: usize, n: usize, mode: u8, top: bool, left: bool) {
    let mut sum = 0;
    let mut count = 0;
    if top {
        sum += (0..n).map(|x| p[o - s + x] as u32).sum::<u32>();
        count += n as u32;
    }
    if left {
        sum += (0..n).map(|y| p[o + y * s - 1] as u32).sum::<u32>();
        count += n as u32;
    }
    let dc = (sum + count / 2).checked_div(count).unwrap_or(128) as u8;
    let tl = p[o - s - 1] as i32;
    for y in 0..n {
        let l = p[o + y * s - 1];
        for x in 0..n {
            let t = p[o - s + x];
            p[o + y * s + x] = match mode {
                DC => dc,
                TM => (l as i32 + t as i32 - tl).clamp(0, 255) as u8,
                VE => t,
                _ => l,
            };
        }
    }
}

/// Predicts a 4x4 luma block at `o` with 4x4 mode `mode`.
fn predict4(p: &mut [u8], o: usize, s: usize, mode: u8) {
    if mode < 2 {
        return predict(p, o, s, 4, mode, true, true);
    }
    let l = |i: usize| p[o + i * s - 1];
    let mut e = [l(3), l(3), l(2), l(1), l(0), p[o - s - 1], 0, 0, 0, 0, 0, 0, 0, 0, 0];
    e[6..14].copy_from_slice(&p[o - s..o - s + 8]);
    e[14] = e[13];
    for (k, &c) in PRED4[mode as usize - 2].iter().enumerate() {
        let i = (c & 0x7f) as usize;
        let v = if c & 0x80 != 0 {
            (e[i] as u32 + e[i + 1] as u32 + 1) >> 1
        } else {
            (e[i - 1] as u32 + 2 * e[i] as u32 + e[i + 1] as u32 + 2) >> 2
        };
        p[o + k / 4 * s + k % 4] = v as u8;
    }
}

fn mul1(a: i32) -> i32 {
    (a.wrapping_mul(20091) >> 16) + a
}

fn mul2(a: i32) -> i32 {
    a.wrapping_mul(35468) >> 16
}

/// Adds the inverse DCT of `c` (raster order) to the 4x4 block at `o`.
fn idct_add(c: &[i16], p: &mut [u8], o: usize, s: usize) {
    if c.iter().all(|&v| v == 0) {
        return;
    }
    let mut t = [0i32; 16];
    for i in 0..4 {
        let v = |k: usize| c[4 * k + i] as i32;
        let (a, b) = (v(0) + v(2), v(0) - v(2));
        let (cc, d) = (mul2(v(1)) - mul1(v(3)), mul1(v(1)) + mul2(v(3)));
        t[4 * i..4 * i + 4].copy_from_slice(&[a + d, b + cc, b - cc, a - d]);
    }
    for i in 0..4 {
        let v = |k: usize| t[4 * k + i];
        let dc = v(0) + 4;
        let (a, b) = (dc + v(2), dc - v(2));
        let (cc, d) = (mul2(v(1)) - mul1(v(3)), mul1(v(1)) + mul2(v(3)));
        for (x, r) in [a + d, b + cc, b - cc, a - d].into_iter().enumerate() {
            let q = &mut p[o + i * s + x];
            *q = (*q as i32 + (r >> 3)).clamp(0, 255) as u8;
        }
    }
}

/// Inverse Walsh-Hadamard transform of the Y2 block into the DC of the 16 luma blocks.
fn iwht(c: &[i16; 16], out: &mut [i16]) {
    let mut t = [0i32; 16];
    for i in 0..4 {
        let v = |k: usize| c[4 * k + i] as i32;
        let (a0, a1, a2, a3) = (v(0) + v(3), v(1) + v(2), v(1) - v(2), v(0) - v(3));
        t[i] = a0 + a1;
        t[8 + i] = a0 - a1;
        t[4 + i] = a3 + a2;
        t[12 + i] = a3 - a2;
    }
    for i in 0..4 {
        let v = |k: usize| t[4 * i + k];
        let dc = v(0) + 3;
        let (a0, a1, a2, a3) = (dc + v(3), v(1) + v(2), v(1) - v(2), dc - v(3));
        for (k, r) in [a0 + a1, a3 + a2, a0 - a1, a3 - a2].into_iter().enumerate() {
            out[(4 * i + k) * 16] = (r >> 3) as i16;
        }
    }
}

/// Reads the tokens of one block from position `n` on into `out` (raster order, dequantized);
/// returns libwebp's count: the position after the last token read (16 after a run of zeros
/// reaching the end).
fn coefficients(br: &mut Bool, probs: &[u8], ctx: usize, dq: [i32; 2], mut n: usize, out: &mut [i16]) -> usize {
    let p = |n: usize, ctx: usize| (BANDS[n] as usize * 3 + ctx) * 11;
    let mut at = p(n, ctx);
    while n < 16 {
        if !br.bit(probs[at]) {
            return n;
        }
        while !br.bit(probs[at + 1]) {
            n += 1;
            if n == 16 {
                return 16;
            }
            at = p(n, 0);
        }
        let pr = &probs[at..at + 11];
        let v = if !br.bit(pr[2]) {
            at = p(n + 1, 1);
            1
        } else {
            at = p(n + 1, 2);
            if !br.bit(pr[3]) {
                if !br.bit(pr[4]) {
                    2
                } else {
                    3 + br.bit(pr[5]) as i32
                }
            } else if !br.bit(pr[6]) {
                if !br.bit(pr[7]) {
                    5 + br.bit(159) as i32
                } else {
                    7 + 2 * br.bit(165) as i32 + br.bit(145) as i32
                }
            } else {
                let cat = 2 * br.bit(pr[8]) as usize;
                let cat = cat + br.bit(pr[9 + cat / 2]) as usize;
                let start = [0, 4, 9, 15][cat];
                let extra = CAT_PROBS[start..].iter().take_while(|&&q| q != 0).fold(0, |v, &q| 2 * v + br.bit(q) as i32);
                extra + 3 + (8 << cat)
            }
        };
        let v = if br.flag() { -v } else { v };
        out[ZIGZAG[n] as usize] = v.wrapping_mul(dq[(n > 0) as usize]) as i16;
        n += 1;
    }
    16
}

/// Filter parameters of a macroblock: (edge limit, interior limit, high-edge-variance
/// threshold); limit 0 means no filtering.
type Strength = (i32, i32, i32);

/// Filters up to `n` pixels across one edge at `o` (`step` across the edge, `along` to the next
/// pixel). `mb_edge` selects the 6-tap filter of macroblock edges in the normal filter.
#[allow(clippy::too_many_arguments)]
fn filter_edge(px: &mut [u8], mut o: usize, step: usize, along: usize, n: usize, limit: i32, f: Strength, simple: bool, mb_edge: bool) {
    let (_, ilevel, hev) = f;
    let thresh = 2 * limit + 1;
    let sclip1 = |v: i32| v.clamp(-128, 127);
    let sclip2 = |v: i32| v.clamp(-16, 15);
    let clip = |v: i32| v.clamp(0, 255) as u8;
    for _ in 0..n {
        let base = o - 4 * step;
        let g = |k: usize| px[base + k * step] as i32;
        let (p3, p2, p1, p0, q0, q1, q2, q3) = (g(0), g(1), g(2), g(3), g(4), g(5), g(6), g(7));
        o += along;
        if 4 * (p0 - q0).abs() + (p1 - q1).abs() > thresh {
            continue;
        }
        let mut out = [p2, p1, p0, q0, q1, q2];
        let outer = simple || (p1 - p0).abs() > hev || (q1 - q0).abs() > hev;
        if !simple && [p3 - p2, p2 - p1, p1 - p0, q3 - q2, q2 - q1, q1 - q0].iter().any(|d| d.abs() > ilevel) {
            continue;
        }
        if outer {
            let a = 3 * (q0 - p0) + sclip1(p1 - q1);
            out[2] = p0 + sclip2((a + 3) >> 3);
            out[3] = q0 - sclip2((a + 4) >> 3);
        } else if mb_edge {
            let a = sclip1(3 * (q0 - p0) + sclip1(p1 - q1));
            for (k, w) in [27, 18, 9].into_iter().enumerate() {
                let d = (w * a + 63) >> 7;
                out[2 - k] += d;
                out[3 + k] -= d;
            }
        } else {
            let a = 3 * (q0 - p0);
            let (a1, a2) = (sclip2((a + 4) >> 3), sclip2((a + 3) >> 3));
            let a3 = (a1 + 1) >> 1;
            out[1] += a3;
            out[2] += a2;
            out[3] -= a1;
            out[4] -= a3;
        }
        for (k, v) in out.into_iter().enumerate() {
            px[base + (k + 1) * step] = clip(v);
        }
    }
}

/// Runs the loop filter over the macroblock at (`mx`, `my`) of `planes` (luma only for the
/// simple filter).
fn filter_mb(planes: &mut [Plane; 3], mx: usize, my: usize, f: Strength, inner: bool, simple: bool) {
    let limit = f.0;
    if limit == 0 {
        return;
    }
    for (i, pl) in planes.iter_mut().enumerate().take(if simple { 1 } else { 3 }) {
        let n = if i == 0 { 16 } else { 8 };
        let (o, s) = (pl.at(mx * n, my * n), pl.stride);
        for (step, along, first) in [(1, s, mx > 0), (s, 1, my > 0)] {
            if first {
                filter_edge(&mut pl.px, o, step, along, n, limit + 4, f, simple, true);
            }
            if inner {
                for k in (4..n).step_by(4) {
                    filter_edge(&mut pl.px, o + k * step, step, along, n, limit, f, simple, false);
                }
            }
        }
    }
}

/// libwebp's fancy upsampling of one chroma row: `near` is the chroma row closest to the output
/// row, `far` the other one; `out` gets one sample per output pixel.
fn upsample(near: &[u8], far: &[u8], out: &mut [u8]) {
    let w = out.len();
    let edge = |i: usize| ((3 * near[i] as u32 + far[i] as u32 + 2) >> 2) as u8;
    out[0] = edge(0);
    for x in 1..=(w - 1) / 2 {
        let (tl, t, l, c) = (near[x - 1] as u32, near[x] as u32, far[x - 1] as u32, far[x] as u32);
        let avg = tl + t + l + c + 8;
        out[2 * x - 1] = ((((avg + 2 * (t + l)) >> 3) + tl) >> 1) as u8;
        out[2 * x] = ((((avg + 2 * (tl + c)) >> 3) + t) >> 1) as u8;
    }
    if w.is_multiple_of(2) {
        out[w - 1] = edge(w / 2 - 1);
    }
}

/// libwebp's fixed-point BT.601 YUV → RGB (VP8YUVToR/G/B).
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let m = |x: u8, c: i32| (x as i32 * c) >> 8;
    let clip = |x: i32| if x & !16383 == 0 { (x >> 6) as u8 } else if x < 0 { 0 } else { 255 };
    let y = m(y, 19077);
    [clip(y + m(v, 26149) - 14234), clip(y - m(u, 6419) - m(v, 13320) + 8708), clip(y + m(u, 33050) - 17685)]
}

/// Decodes a VP8 key frame (the payload of a "VP8 " chunk): (width, height, RGB samples).
pub(super) fn decode(data: &[u8]) -> OpResult<(usize, usize, Vec<u8>)> {
    let [t0, t1, t2, s0, s1, s2, w0, w1, h0, h1, ..] = *data else {
        return Err(bad("VP8 frame header is truncated"));
    };
    let tag = t0 as usize | (t1 as usize) << 8 | (t2 as usize) << 16;
    if tag & 1 != 0 {
        return Err(bad("not a key frame"));
    }
    if (tag >> 1) & 7 > 3 || (tag >> 4) & 1 == 0 {
        return Err(bad("unsupported VP8 profile or hidden frame"));
    }
    if [s0, s1, s2] != [0x9d, 0x01, 0x2a] {
        return Err(bad("bad VP8 start code"));
    }
    let w = (u16::from_le_bytes([w0, w1]) & 0x3fff) as usize;
    let h = (u16::from_le_bytes([h0, h1]) & 0x3fff) as usize;
    super::check_dims(w, h)?;
    let rest = &data[10..];
    let part0 = tag >> 5;
    if part0 > rest.len() {
        return Err(bad("VP8 first partition is truncated"));
    }
    let mut br = Bool::new(&rest[..part0]);
    let _colorspace_and_clamping = br.value(2);

    // Segment header; libwebp's defaults apply when the segment data is not updated.
    let use_segment = br.flag();
    let (mut update_map, mut absolute) = (false, true);
    let (mut seg_q, mut seg_lf, mut seg_probs) = ([0; 4], [0; 4], [255u8; 3]);
    if use_segment {
        update_map = br.flag();
        if br.flag() {
            absolute = br.flag();
            for (i, v) in seg_q.iter_mut().chain(seg_lf.iter_mut()).enumerate() {
                *v = br.opt_signed(if i < 4 { 7 } else { 6 });
            }
        }
        if update_map {
            for p in seg_probs.iter_mut() {
                *p = if br.flag() { br.value(8) as u8 } else { 255 };
            }
        }
    }
    // Filter header: only the first reference-frame and mode deltas apply to intra frames.
    let simple = br.flag();
    let level = br.value(6);
    let sharpness = br.value(3);
    let (mut ref_delta, mut mode_delta) = (0, 0);
    if br.flag() && br.flag() {
        for i in 0..8 {
            let d = br.opt_signed(6);
            if i == 0 {
                ref_delta = d;
            } else if i == 4 {
                mode_delta = d;
            }
        }
    }
    if br.eof {
        return Err(bad("VP8 header is truncated"));
    }

    // Token partitions: 3-byte sizes, the last one takes the rest and must not be empty.
    let nparts = 1 << br.value(2);
    let after = &rest[part0..];
    let sizes = after.get(..3 * (nparts - 1)).ok_or_else(|| bad("VP8 partition sizes are truncated"))?;
    let mut left = &after[sizes.len()..];
    let mut parts = Vec::new();
    for k in 0..nparts {
        let size = match sizes.get(3 * k..3 * k + 3) {
            Some(s) => (s[0] as usize | (s[1] as usize) << 8 | (s[2] as usize) << 16).min(left.len()),
            None => left.len(),
        };
        parts.push(Bool::new(&left[..size]));
        left = &left[size..];
    }
    if parts.last().is_some_and(|p| p.data.is_empty()) {
        return Err(bad("VP8 token partitions are truncated"));
    }

    // Quantizers per segment.
    let base_q = br.value(7);
    let mut dq = [0; 5];
    for d in dq.iter_mut() {
        *d = br.opt_signed(4);
    }
    let mut quant: [Quant; 4] = [[[0; 2]; 3]; 4];
    for (s, m) in quant.iter_mut().enumerate() {
        let q = if use_segment { seg_q[s] + if absolute { 0 } else { base_q } } else { base_q };
        let dc = |d: i32, max: i32| DC_QUANT[(q + d).clamp(0, max) as usize] as i32;
        let ac = |d: i32| AC_QUANT[(q + d).clamp(0, 127) as usize] as i32;
        *m = [[dc(dq[0], 127), ac(0)], [dc(dq[1], 127) * 2, ((ac(dq[2]) * 101581) >> 16).max(8)], [dc(dq[3], 117), ac(dq[4])]];
    }
    let _refresh_probs = br.flag();
    let mut probs = COEFF_PROBS;
    for (p, &u) in probs.iter_mut().zip(COEFF_UPDATE_PROBS.iter()) {
        if br.bit(u) {
            *p = br.value(8) as u8;
        }
    }
    let skip_prob = if br.flag() { Some(br.value(8) as u8) } else { None };

    // Loop filter strength per segment and 4x4-ness (libwebp's PrecomputeFilterStrengths).
    let filter = if level == 0 { 0 } else if simple { 1 } else { 2 };
    let strength = |segment: usize, i4: bool| -> Strength {
        let mut l = if use_segment { seg_lf[segment] + if absolute { 0 } else { level } } else { level };
        l += ref_delta + if i4 { mode_delta } else { 0 };
        let l = l.clamp(0, 63);
        if l == 0 {
            return (0, 0, 0);
        }
        let mut il = l;
        if sharpness > 0 {
            il >>= if sharpness > 4 { 2 } else { 1 };
            il = il.min(9 - sharpness);
        }
        let il = il.max(1);
        (2 * l + il, il, if l >= 40 { 2 } else if l >= 15 { 1 } else { 0 })
    };

    // Modes of every macroblock, row by row, failing at the first row the partition cannot hold.
    let (mbw, mbh) = (w.div_ceil(16), h.div_ceil(16));
    let mut mbs = Vec::new();
    let mut top_ctx = vec![[DC; 4]; mbw];
    for _ in 0..mbh {
        let mut left_ctx = [DC; 4];
        for top in top_ctx.iter_mut() {
            let segment = if update_map {
                if !br.bit(seg_probs[0]) {
                    br.bit(seg_probs[1]) as u8
                } else {
                    2 + br.bit(seg_probs[2]) as u8
                }
            } else {
                0
            };
            let skip = skip_prob.is_some_and(|p| br.bit(p));
            let i4 = !br.bit(145);
            let mut modes = [DC; 16];
            if !i4 {
                modes[0] = if br.bit(156) {
                    if br.bit(128) {
                        TM
                    } else {
                        HE
                    }
                } else if br.bit(163) {
                    VE
                } else {
                    DC
                };
                *top = [modes[0]; 4];
                left_ctx = [modes[0]; 4];
            } else {
                for y in 0..4 {
                    for x in 0..4 {
                        let ctx = (top[x] as usize * 10 + left_ctx[y] as usize) * 9;
                        let m = br.tree(&BMODE_TREE, &BMODE_PROBS[ctx..ctx + 9]);
                        modes[y * 4 + x] = m;
                        top[x] = m;
                        left_ctx[y] = m;
                    }
                }
            }
            let uv = if !br.bit(142) {
                DC
            } else if !br.bit(114) {
                VE
            } else if br.bit(183) {
                TM
            } else {
                HE
            };
            mbs.push(Mb { segment, skip, i4, modes, uv });
        }
        if br.eof {
            return Err(bad("VP8 first partition is truncated"));
        }
    }

    // Residuals and reconstruction, macroblock by macroblock.
    let mut planes = [Plane::new(mbw * 16, mbh * 16)?, Plane::new(mbw * 8, mbh * 8)?, Plane::new(mbw * 8, mbh * 8)?];
    let mut inner = vec![false; mbw * mbh];
    // Non-zero contexts: 4 luma, 2 + 2 chroma, Y2.
    let mut top_nz = vec![[0u8; 9]; mbw];
    let mut coeffs = [0i16; 384];
    for my in 0..mbh {
        let tb = &mut parts[my % nparts];
        let mut left_nz = [0u8; 9];
        for mx in 0..mbw {
            let mb = mbs[my * mbw + mx];
            let q = &quant[mb.segment as usize];
            let tnz = &mut top_nz[mx];
            coeffs.fill(0);
            let mut nonzero = false;
            if mb.skip {
                let keep_dc = if mb.i4 { 8 } else { 9 };
                tnz[..keep_dc].fill(0);
                left_nz[..keep_dc].fill(0);
            } else {
                let (first, kind) = if mb.i4 {
                    (0, 3)
                } else {
                    let mut y2 = [0i16; 16];
                    let ctx = (tnz[8] + left_nz[8]) as usize;
                    let nz = coefficients(tb, &probs[264..528], ctx, q[1], 0, &mut y2);
                    tnz[8] = (nz > 0) as u8;
                    left_nz[8] = tnz[8];
                    iwht(&y2, &mut coeffs);
                    (1, 0)
                };
                for b in 0..24 {
                    // Blocks 0..16 are luma (4x4 raster), 16..20 U and 20..24 V (2x2 each).
                    let (t, l, kind, dq, first) = match b {
                        0..=15 => (b % 4, b / 4, kind, q[0], first),
                        _ => {
                            let c = 4 + (b - 16) / 4 * 2;
                            (c + b % 2, c + (b % 4) / 2, 2, q[2], 0)
                        }
                    };
                    let ctx = (tnz[t] + left_nz[l]) as usize;
                    let blk = &mut coeffs[b * 16..b * 16 + 16];
                    let nz = coefficients(tb, &probs[kind * 264..kind * 264 + 264], ctx, dq, first, blk);
                    tnz[t] = (nz > first) as u8;
                    left_nz[l] = tnz[t];
                    nonzero |= nz > 1 || blk[0] != 0;
                }
            }
            if tb.eof {
                return Err(bad("VP8 token partition is truncated"));
            }
            inner[my * mbw + mx] = mb.i4 || nonzero;
            reconstruct(&mut planes, &mb, &coeffs, mx, my, mbw);
        }
    }

    if filter > 0 {
        for my in 0..mbh {
            for mx in 0..mbw {
                let mb = &mbs[my * mbw + mx];
                let f = strength(mb.segment as usize, mb.i4);
                filter_mb(&mut planes, mx, my, f, inner[my * mbw + mx], filter == 1);
            }
        }
    }

    // Fancy upsampling and colour conversion.
    let [yp, up, vp] = &planes;
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut rgb = zeroed(w * h * 3)?;
    let (mut u, mut v) = (vec![0u8; w], vec![0u8; w]);
    for y in 0..h {
        let (near, far) = match y {
            0 => (0, 0),
            _ if y % 2 == 1 => (y / 2, y.div_ceil(2).min(ch - 1)),
            _ => (y / 2, y / 2 - 1),
        };
        upsample(up.row(near, cw), up.row(far, cw), &mut u);
        upsample(vp.row(near, cw), vp.row(far, cw), &mut v);
        let luma = yp.row(y, w);
        for (x, px) in rgb[y * w * 3..(y + 1) * w * 3].chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&yuv_to_rgb(luma[x], u[x], v[x]));
        }
    }
    Ok((w, h, rgb))
}

/// Predicts the macroblock at (`mx`, `my`) and adds its residuals.
fn reconstruct(planes: &mut [Plane; 3], mb: &Mb, coeffs: &[i16; 384], mx: usize, my: usize, mbw: usize) {
    let yp = &mut planes[0];
    let (o, s) = (yp.at(mx * 16, my * 16), yp.stride);
    if mb.i4 {
        // Top-right of the macroblock: the row above (replicated past the right edge; 127 on
        // the first row), also used by the right column of 4x4 blocks further down.
        if my > 0 && mx == mbw - 1 {
            let v = yp.px[o - s + 15];
            yp.px[o - s + 16..o - s + 20].fill(v);
        }
        for r in [3, 7, 11] {
            yp.px.copy_within(o - s + 16..o - s + 20, o + r * s + 16);
        }
        for b in 0..16 {
            let bo = o + (b / 4) * 4 * s + (b % 4) * 4;
            predict4(&mut yp.px, bo, s, mb.modes[b]);
            idct_add(&coeffs[b * 16..b * 16 + 16], &mut yp.px, bo, s);
        }
    } else {
        predict(&mut yp.px, o, s, 16, mb.modes[0], my > 0, mx > 0);
        for b in 0..16 {
            idct_add(&coeffs[b * 16..b * 16 + 16], &mut yp.px, o + (b / 4) * 4 * s + (b % 4) * 4, s);
        }
    }
    for (c, p) in planes[1..].iter_mut().enumerate() {
        let (o, s) = (p.at(mx * 8, my * 8), p.stride);
        predict(&mut p.px, o, s, 8, mb.uv, my > 0, mx > 0);
        for b in 0..4 {
            let k = 16 + c * 4 + b;
            idct_add(&coeffs[k * 16..k * 16 + 16], &mut p.px, o + (b / 2) * 4 * s + (b % 2) * 4, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random values in -range..range.
    fn values(n: usize, range: i32, seed: u64) -> Vec<i32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % (2 * range as u64)) as i32 - range
            })
            .collect()
    }

    /// RFC 6386 section 14.3, `vp8_short_idct4x4llm_c`: columns first, then rows with rounding.
    fn rfc_idct(input: &[i16; 16]) -> [i32; 16] {
        let (s, c) = (35468, 20091);
        let mut t = [0i32; 16];
        for i in 0..4 {
            let ip = |k: usize| input[i + 4 * k] as i32;
            let (a1, b1) = (ip(0) + ip(2), ip(0) - ip(2));
            let c1 = ((ip(1) * s) >> 16) - (ip(3) + ((ip(3) * c) >> 16));
            let d1 = (ip(1) + ((ip(1) * c) >> 16)) + ((ip(3) * s) >> 16);
            [t[i], t[4 + i], t[8 + i], t[12 + i]] = [a1 + d1, b1 + c1, b1 - c1, a1 - d1];
        }
        let mut out = [0i32; 16];
        for i in 0..4 {
            let ip = |k: usize| t[4 * i + k];
            let (a1, b1) = (ip(0) + ip(2), ip(0) - ip(2));
            let c1 = ((ip(1) * s) >> 16) - (ip(3) + ((ip(3) * c) >> 16));
            let d1 = (ip(1) + ((ip(1) * c) >> 16)) + ((ip(3) * s) >> 16);
            out[4 * i..4 * i + 4].copy_from_slice(&[(a1 + d1 + 4) >> 3, (b1 + c1 + 4) >> 3, (b1 - c1 + 4) >> 3, (a1 - d1 + 4) >> 3]);
        }
        out
    }

    #[test]
    fn idct_matches_rfc_reference() {
        for seed in 1..200u64 {
            let range = [16, 300, 2048][seed as usize % 3];
            let coef: [i16; 16] = std::array::from_fn(|i| values(16, range, seed)[i] as i16);
            let pred: Vec<u8> = values(16, 128, seed * 7).iter().map(|&v| (v + 128) as u8).collect();
            let mut px = pred.clone();
            idct_add(&coef, &mut px, 0, 4);
            let res = rfc_idct(&coef);
            for k in 0..16 {
                assert_eq!(px[k] as i32, (pred[k] as i32 + res[k]).clamp(0, 255), "seed {seed} pixel {k}");
            }
        }
    }

    #[test]
    fn iwht_matches_rfc_reference() {
        for seed in 1..100u64 {
            let input: [i16; 16] = std::array::from_fn(|i| values(16, 4000, seed)[i] as i16);
            let mut out = [0i16; 384];
            iwht(&input, &mut out);
            // RFC 6386 section 14.3, `vp8_short_inv_walsh4x4_c`.
            let mut t = [0i32; 16];
            for i in 0..4 {
                let ip = |k: usize| input[i + 4 * k] as i32;
                let (a1, b1, c1, d1) = (ip(0) + ip(3), ip(1) + ip(2), ip(1) - ip(2), ip(0) - ip(3));
                [t[i], t[4 + i], t[8 + i], t[12 + i]] = [a1 + b1, c1 + d1, a1 - b1, d1 - c1];
            }
            for i in 0..4 {
                let ip = |k: usize| t[4 * i + k];
                let (a1, b1, c1, d1) = (ip(0) + ip(3), ip(1) + ip(2), ip(1) - ip(2), ip(0) - ip(3));
                for (k, v) in [a1 + b1, c1 + d1, a1 - b1, d1 - c1].into_iter().enumerate() {
                    assert_eq!(out[(4 * i + k) * 16] as i32, (v + 3) >> 3, "seed {seed} block {}", 4 * i + k);
                }
            }
        }
    }

    #[test]
    fn yuv_to_rgb_is_bt601_within_rounding() {
        // Limited-range BT.601: R = 1.164 (Y - 16) + 1.596 (V - 128), etc.
        for (y, u, v) in [(16, 128, 128), (235, 128, 128), (81, 90, 240), (145, 54, 34), (41, 240, 110), (128, 0, 255)] {
            let f = |x: f64| x.round().clamp(0.0, 255.0) as i32;
            let (yf, uf, vf) = (1.164 * (y as f64 - 16.0), u as f64 - 128.0, v as f64 - 128.0);
            let want = [f(yf + 1.596 * vf), f(yf - 0.391 * uf - 0.813 * vf), f(yf + 2.018 * uf)];
            let got = yuv_to_rgb(y, u, v);
            for c in 0..3 {
                assert!((got[c] as i32 - want[c]).abs() <= 1, "{y} {u} {v}: {got:?} vs {want:?}");
            }
        }
    }
}

package grad

// Row-major float32 GEMM kernels in plain Go, C += op(A)·op(B). Four rows of
// C share each load of a row of B (NN, TN) and columns are blocked so that
// those four rows stay in L1. No SIMD: Go emits scalar SSE for these loops,
// which is what the ORT comparison in doc.go measures.

const gemmBlock = 512 // columns of C per block: 4 rows × 2 KiB plus a row of B

// gemmNN: C[m,n] += A[m,k] · B[k,n].
func gemmNN(m, n, k int, a, b, c []float32) {
	gemm4(m, n, k, func(i, p int) float32 { return a[i*k+p] }, b, c)
}

// gemmTN: C[m,n] += Aᵀ · B with A stored [k,m].
func gemmTN(m, n, k int, a, b, c []float32) {
	gemm4(m, n, k, func(i, p int) float32 { return a[p*m+i] }, b, c)
}

// gemm4 is the shared NN/TN loop: at(i, p) reads A[i,p].
func gemm4(m, n, k int, at func(i, p int) float32, b, c []float32) {
	for j0 := 0; j0 < n; j0 += gemmBlock {
		j1 := min(j0+gemmBlock, n)
		i := 0
		for ; i+4 <= m; i += 4 {
			c0 := c[i*n+j0 : i*n+j1]
			c1 := c[(i+1)*n+j0 : (i+1)*n+j1]
			c2 := c[(i+2)*n+j0 : (i+2)*n+j1]
			c3 := c[(i+3)*n+j0 : (i+3)*n+j1]
			for p := range k {
				a0, a1, a2, a3 := at(i, p), at(i+1, p), at(i+2, p), at(i+3, p)
				if a0 == 0 && a1 == 0 && a2 == 0 && a3 == 0 {
					continue
				}
				br := b[p*n+j0 : p*n+j1]
				c0, c1, c2, c3 := c0[:len(br)], c1[:len(br)], c2[:len(br)], c3[:len(br)]
				for j, bv := range br {
					c0[j] += a0 * bv
					c1[j] += a1 * bv
					c2[j] += a2 * bv
					c3[j] += a3 * bv
				}
			}
		}
		for ; i < m; i++ {
			ci := c[i*n+j0 : i*n+j1]
			for p := range k {
				av := at(i, p)
				if av == 0 {
					continue
				}
				br := b[p*n+j0 : p*n+j1]
				ci := ci[:len(br)]
				for j, bv := range br {
					ci[j] += av * bv
				}
			}
		}
	}
}

// gemmNT: C[m,n] += A[m,k] · Bᵀ with B stored [n,k]: dot products of rows,
// four rows of B per row of A.
func gemmNT(m, n, k int, a, b, c []float32) {
	for i := range m {
		ar := a[i*k : (i+1)*k]
		ci := c[i*n : (i+1)*n]
		j := 0
		for ; j+4 <= n; j += 4 {
			b0 := b[j*k : (j+1)*k][:len(ar)]
			b1 := b[(j+1)*k : (j+2)*k][:len(ar)]
			b2 := b[(j+2)*k : (j+3)*k][:len(ar)]
			b3 := b[(j+3)*k : (j+4)*k][:len(ar)]
			var s0, s1, s2, s3 float32
			for p, av := range ar {
				s0 += av * b0[p]
				s1 += av * b1[p]
				s2 += av * b2[p]
				s3 += av * b3[p]
			}
			ci[j] += s0
			ci[j+1] += s1
			ci[j+2] += s2
			ci[j+3] += s3
		}
		for ; j < n; j++ {
			bj := b[j*k : (j+1)*k][:len(ar)]
			var s float32
			for p, av := range ar {
				s += av * bj[p]
			}
			ci[j] += s
		}
	}
}

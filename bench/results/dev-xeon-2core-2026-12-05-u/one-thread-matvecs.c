#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
// y[0..C) = sum_k x[k] * W[k*stride + c], C = 192 (12 vectors)
static void rowk(const float* x, const float* W, long stride, float* y, int K) {
  __m512 a[12]; for(int j=0;j<12;j++) a[j]=_mm512_setzero_ps();
  for(int k=0;k<K;k++){ __m512 xv=_mm512_set1_ps(x[k]); const float* w=W+k*stride;
    for(int j=0;j<12;j++) a[j]=_mm512_fmadd_ps(xv,_mm512_loadu_ps(w+16*j),a[j]); }
  for(int j=0;j<12;j++) _mm512_storeu_ps(y+16*j,a[j]);
}
int main(int argc,char**argv){
  int K=128, N=384; int mats = argc>1?atoi(argv[1]):16; // 16 mats of 196KB = 3.1MB
  float* x=aligned_alloc(64,K*4); for(int k=0;k<K;k++)x[k]=0.01f*k;
  float* W=aligned_alloc(64,(size_t)mats*K*N*4); for(size_t i=0;i<(size_t)mats*K*N;i++)W[i]=1e-3f*(i%13);
  float y[384];
  for(int mode=0;mode<2;mode++){ double best=1e9;
    for(int r=0;r<2000;r++){ double t=now();
      for(int m=0;m<mats;m++){ const float* Wm=W+(size_t)m*K*N;
        if(mode==0){ rowk(x,Wm,N,y,K); rowk(x,Wm+192,N,y+192,K);} // strided halves
        else { rowk(x,Wm,192,y,K); rowk(x,Wm+K*192,192,y+192,K);} // packed halves (contiguous)
      }
      t=now()-t; if(t<best)best=t; }
    printf("%s: %.1f us for %.2f MB, %.1f GB/s (y0 %g)\n", mode?"packed":"strided", best*1e6, mats*K*N*4/1048576.0, mats*K*N*4/best/1e9, y[0]);
  }
}

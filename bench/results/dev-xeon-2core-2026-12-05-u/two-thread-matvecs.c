#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void rowk(const float* x, const float* W, long stride, float* y, int K) {
  __m512 a[12]; for(int j=0;j<12;j++) a[j]=_mm512_setzero_ps();
  for(int k=0;k<K;k++){ __m512 xv=_mm512_set1_ps(x[k]); const float* w=W+k*stride;
    for(int j=0;j<12;j++) a[j]=_mm512_fmadd_ps(xv,_mm512_loadu_ps(w+16*j),a[j]); }
  for(int j=0;j<12;j++) _mm512_storeu_ps(y+16*j,a[j]);
}
int K=128,N=384,mats=16,mode; float *x,*W; _Atomic int go, done; float ys[2][384];
// per matrix, each thread does one half of the columns (as a 2-chunk parallel_for); one barrier per matrix
void work(int tid,int iter){ for(int m=0;m<mats;m++){ int half = mode? ((tid+iter)&1) : tid; rowk(x,W+(size_t)m*K*N+half*192,N,ys[tid],K);} }
void* helper(void*_){ for(int it=1;;it++){ while(atomic_load(&go)<it) _mm_pause(); work(1,it); atomic_fetch_add(&done,1);} }
int main(int argc,char**argv){ mats=argc>1?atoi(argv[1]):16;
  x=aligned_alloc(64,K*4); for(int k=0;k<K;k++)x[k]=0.01f*k;
  W=aligned_alloc(64,(size_t)mats*K*N*4); for(size_t i=0;i<(size_t)mats*K*N;i++)W[i]=1e-3f*(i%13);
  pthread_t t; pthread_create(&t,0,helper,0);
  for(mode=0;mode<2;mode++){ double best=1e9;
   for(int r=0;r<3000;r++){ int it=mode*3000+r+1; double t0=now(); atomic_store(&go,it); work(0,it); while(atomic_load(&done)<it) _mm_pause(); t0=now()-t0; if(t0<best)best=t0; }
   printf("%s: %.1f us for %.2f MB (%.1f GB/s)\n", mode?"alternating halves":"fixed halves", best*1e6, mats*K*N*4/1048576.0, mats*K*N*4/best/1e9); }
}

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  for (double mb=0.25; mb<=8; mb*= (mb<3?1.25:2)) {
    size_t n = (size_t)(mb*1024*1024/4)/64*64;
    float* a = aligned_alloc(64, n*4); for(size_t i=0;i<n;i++) a[i]=1e-3f*(i%7);
    __m512 acc=_mm512_setzero_ps(), acc2=_mm512_setzero_ps();
    int reps = (int)(2000/mb)+10; double best=1e9;
    for (int r=0;r<reps;r++){ double t=now();
      for(size_t i=0;i<n;i+=32){ acc=_mm512_add_ps(acc,_mm512_load_ps(a+i)); acc2=_mm512_add_ps(acc2,_mm512_load_ps(a+i+16)); }
      t=now()-t; if(t<best)best=t; }
    float s=_mm512_reduce_add_ps(_mm512_add_ps(acc,acc2));
    printf("%.2f MB: %.1f GB/s (%g)\n", mb, n*4/best/1e9, s);
    free(a);
  }
}
